"""A training's learning curves in one picture: the losses, validation accuracy and CER by iteration, and each
evaluated split's accuracy, from the pretrained start and fine-tuned."""

from __future__ import annotations

import io

from hwocr import storage


def learning_curves(history: list[dict], tuned: dict[str, float], start: dict[str, float] | None,
                    out_url: str) -> None:
    """history: the trainer's entries ({"iteration", "train_loss", "valid_loss", "accuracy", "cer", ...}); tuned
    and start: accuracy per split (start: None without a pretrained start)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    it = [h["iteration"] for h in history]
    fig, (loss, acc, cer, splits) = plt.subplots(1, 4, figsize=(16, 3.8))
    for key, label in (("train_loss", "train"), ("valid_loss", "validation")):
        loss.plot(it, [h[key] for h in history], marker=".", label=label)
    loss.set(title="loss", xlabel="iteration")
    loss.legend()
    acc.plot(it, [h["accuracy"] for h in history], marker=".", color="tab:green")
    acc.set(title="validation accuracy (%)", xlabel="iteration", ylim=(0, 100))
    cer.plot(it, [h["cer"] for h in history], marker=".", color="tab:red")
    cer.set(title="validation CER", xlabel="iteration", ylim=(0, None))
    names = list(tuned)
    x = range(len(names))
    if start:
        splits.bar([i - 0.2 for i in x], [start.get(n, 0) for n in names], width=0.4, label="start", color="0.6")
    splits.bar([i + (0.2 if start else 0) for i in x], [tuned[n] for n in names], width=0.4 if start else 0.6,
               label="fine-tuned", color="tab:blue")
    splits.set_xticks(list(x), names, rotation=20)
    splits.set(title="accuracy per split (%)", ylim=(0, 100))
    splits.legend()
    for ax in (loss, acc, cer, splits):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    storage.write_bytes(out_url, buf.getvalue())
