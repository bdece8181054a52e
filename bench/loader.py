"""The training loader alone: samples/s in-process and with 1, 2 and all worker processes, against the demand of a
training step on the same machine (the anchor).

The data are trdg renders of the bundled words at the seed's settings, read as the seed trains (`preprocess: pad`,
80x100, batch 192). Each loader row decodes --batches batches after a warm-up of one batch per worker, whose time
(the workers' start-up) is printed apart. The step row is a bare forward, CTC loss, backward and Adadelta step of
the default network on a batch already in memory, with every core; its samples/s is what the loop asks of the
loader, and the loader's share is that demand over the loader's rate (the step time the loader would take if it ran
in series).

    .venv/bin/python bench/loader.py [--batches 12] [--steps 3] [--augment]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def loader_rate(data, batch: int, workers: int, batches: int, augment) -> tuple[float, float]:
    """(samples/s over `batches` batches after the warm-up, seconds of the warm-up): the warm-up is one batch from
    each worker, so that every worker has started (imported torch, opened the LMDB) before the clock runs."""
    from models.data import MixedLoader

    loader = MixedLoader([data], [1.0], batch, seed=1, workers=workers, augment=augment)
    start = time.perf_counter()
    for _ in range(max(1, workers)):
        next(loader)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    rate = batches * batch / (time.perf_counter() - start)
    loader.close()
    return rate, first


def step_rate(data, batch: int, steps: int) -> float:
    """Samples/s of the bare training step (the first, warm-up step not timed)."""
    import torch
    from torch import nn

    from models.codec import CTCCodec
    from models.data import MixedLoader
    from models.pretrained import GEN2

    codec = CTCCodec(data.charset)
    loader = MixedLoader([data], [1.0], batch, seed=1)
    batches = [next(loader) for _ in range(steps + 1)]
    torch.manual_seed(1)
    model = GEN2.build(codec.num_class).to(memory_format=torch.channels_last)
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-8)
    ctc = nn.CTCLoss(zero_infinity=True)
    for k, (images, labels) in enumerate(batches):
        if k == 1:
            start = time.perf_counter()
        logits = model(images.contiguous(memory_format=torch.channels_last))
        targets, lengths = codec.encode(labels)
        loss = ctc(logits.log_softmax(2).permute(1, 0, 2), targets,
                   torch.full((len(labels),), logits.size(1), dtype=torch.int), lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=192)
    p.add_argument("--batches", type=int, default=12, help="timed batches per loader row")
    p.add_argument("--steps", type=int, default=3, help="timed training steps of the anchor")
    p.add_argument("--images", type=int, default=1152, help="rendered images in the LMDB")
    p.add_argument("--augment", action="store_true", help="every train.augment effect on (default probability)")
    args = p.parse_args()

    import torch

    from bench.train import make_lmdb
    from models.charset import load_charset
    from models.data import WORKER_CONTEXT, LmdbDataset
    from synth.effects import EffectsSettings, augmenter

    cores = os.cpu_count() or 1
    augment = augmenter(EffectsSettings.all_on()) if args.augment else None
    with tempfile.TemporaryDirectory(prefix="hwocr-bench-loader-", dir=ROOT) as tmp:
        data = LmdbDataset(make_lmdb(tmp, args.images), load_charset("korean_g2"), mode="pad")
        rows = {w: loader_rate(data, args.batch, w, args.batches, augment) for w in sorted({0, 1, 2, cores})}
        torch.set_num_threads(cores)
        demand = step_rate(data, args.batch, args.steps)
    print(f"loader, batch {args.batch}, 80x100 (pad){', augment all on' if augment else ''}, {args.batches} timed "
          f"batches, {cores} cores, workers by {WORKER_CONTEXT}")
    print("| loader | samples/s | vs 1 worker | start-up | step's demand / loader |\n|---|---:|---:|---:|---:|")
    for w, (rate, first) in rows.items():
        name = "in-process (0 workers)" if w == 0 else f"{w} worker{'s' if w > 1 else ''}"
        print(f"| {name} | {rate:.0f} | {rate / rows[1][0]:.2f}x | {first:.2f} s | {100 * demand / rate:.1f}% |")
    print(f"| training step, {cores} threads (anchor) | {demand:.1f} | | | |")
    print(f"2 workers vs 1: {rows[2][0] / rows[1][0]:.2f}x")


if __name__ == "__main__":
    main()
