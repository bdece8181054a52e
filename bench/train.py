"""Training throughput: hwocr's whole training loop vs a bare forward+backward of the same model (anchor).

Both run on the same batches: trdg renders of the bundled words at the seed's settings, batch 192, 80x100 (the
seed's fixed width, `preprocess: pad`), and the same thread count. Each configuration runs in its own process,
which reports its peak RSS. The bare loop is
forward, CTC loss, backward and an Adadelta step on batches already in memory: what the hardware does with no
data loading, clipping, logging or checkpointing. It is the practical limit, and the goal is a loop overhead under 10%.
The compile row is the loop with `train.compile` (torch.compile), timed after a first one-step run that compiles
(the timed run resumes from it and compiles again in the same process, from inductor's cache); the workers row is
the loop with one loader worker process instead of decoding in-process (auto on CPU). The augment row prices
training-time augmentation: every effect on, at each effect's default probability (0.5).
The natural-width rows train as EasyOCR reads (`preprocess: easyocr`, each word at ceil(ratio) x img_h, batches
bucketed by width) at height 80 and 64; their GFLOP/s counts the area they really compute, so it compares with the
anchor's, while their samples/s says what a user gets.

The --models rows price train.model's main combinations in the same loop (batch 32 at 64x100, `preprocess: pad`,
fp32, from scratch): samples/s, its ratio to None-VGG-BiLSTM-CTC's (the anchor of these rows), parameters and
peak RSS. --budget N trains each of them for N iterations on one fixed closed-vocabulary set (WORDS words in two
handwriting faces, the same images and batches for all) and reads its validation split: how far each combination
gets on the same budget.

    .venv/bin/python bench/train.py [--iters 8] [--threads 2]
    .venv/bin/python bench/train.py --models [--iters 2]
    .venv/bin/python bench/train.py --budget 300
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BATCH = 192
KINDS = {"fp32": ("bare", "loop", "compile", "workers", "recompute", "augment", "natural80", "natural64"),
         "bf16": ("bare", "loop", "compile", "workers", "recompute", "augment", "natural80", "natural64")}
NAMES = {"bare": "bare forward+backward (anchor)", "loop": "hwocr training loop", "compile": "loop, train.compile",
         "workers": "loop, loader_workers=1", "recompute": "loop, recompute_layers=3",
         "augment": "loop, train.augment all on", "natural80": "loop, natural width, height 80",
         "natural64": "loop, natural width, height 64"}
RECOMPUTE = 3  # conv1, ReLU, pool1: the largest activations, the cheapest convolution


PEN = "/usr/share/fonts/truetype/nanum/NanumPen.ttf"
PILGI = "/usr/share/fonts/truetype/unfonts-core/UnPilgi.ttf"
# The main combinations: the seed's, each stage changed alone, the benchmark's best (TPS-ResNet-BiLSTM-Attn) and
# its CTC twin.
MODELS = ["None-VGG-BiLSTM-CTC", "TPS-VGG-BiLSTM-CTC", "None-RCNN-BiLSTM-CTC", "None-ResNet-BiLSTM-CTC",
          "None-VGG-None-CTC", "None-VGG-BiLSTM-Attn", "TPS-ResNet-BiLSTM-CTC", "TPS-ResNet-BiLSTM-Attn"]
MODEL_BATCH, MODEL_H = 32, 64
WORDS = 20  # the budget's closed vocabulary: the bundled list's first Korean words
BUDGET_BATCH, BUDGET_TRAIN, BUDGET_VAL = 16, 800, 100


def make_lmdb(folder: str, n: int, words: list[str] | None = None, fonts: tuple[str, ...] = (PEN,),
              split: str = "train") -> str:
    from models.lmdb_format import PackSettings, pack
    from synth import trdg_driver
    from synth.render_settings import RenderSettings
    from synth.words import BUNDLED_WORDS

    if words is None:
        with open(BUNDLED_WORDS, encoding="utf-8") as f:
            words = f.read().split()
    gt = ""
    for i, font in enumerate(fonts):
        shard = f"shard{i}"
        job = trdg_driver.RenderJob(settings=RenderSettings().pixel_settings(), words=words,
                                    covered="".join(set("".join(words))), split=split, font_sha=f"{i}" * 64,
                                    font_path=font, start=0, stop=n // len(fonts), key="bench",
                                    dir=os.path.join(folder, shard))
        trdg_driver.render_shard_here(job)
        with open(os.path.join(folder, shard, "labels.tsv"), encoding="utf-8") as f:
            gt += "".join(f"{shard}/" + line for line in f)
    with open(os.path.join(folder, "gt.txt"), "w", encoding="utf-8") as f:
        f.write(gt)
    out = os.path.join(folder, "lmdb")
    pack(os.path.join(folder, "gt.txt"), folder, out, PackSettings())
    return out


def model_settings(name: str):
    from models.train_settings import ModelSettings

    t, f, s, p = name.split("-")
    return ModelSettings(transformation=t, feature_extraction=f, sequence_modeling=s, prediction=p)


def model_child(name: str, lmdb_path: str, val_path: str, iters: int, threads: int, out_dir: str,
                budget: bool) -> dict:
    """One combination in the loop: speed (iters timed iterations), or a budget run's validation figures."""
    import torch

    from models.pretrained import build_for
    from models.train_settings import TrainSettings
    from models.trainer import train

    torch.set_num_threads(threads)
    s = TrainSettings(pretrained="none", precision="fp32", threads=threads, num_iter=iters if budget else iters + 1,
                      val_interval=max(1, iters // 3) if budget else iters + 1,
                      batch_size=BUDGET_BATCH if budget else MODEL_BATCH,
                      preprocess="pad", img_h=MODEL_H if not budget else 32, model=model_settings(name),
                      optimizer="adam", lr=0.001, batch_max_length=25)
    start = time.monotonic()
    result = train(s, [lmdb_path], val_path, out_dir, log=lambda m: None)
    last = result["history"][-1]
    return {"samples_per_s": last["samples_per_s"], "parameters": sum(p.numel() for p in build_for(s).parameters()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "accuracy": max(h["accuracy"] for h in result["history"]),
            "norm_ed": max(h["norm_ed"] for h in result["history"]), "minutes": (time.monotonic() - start) / 60}


def run_models(args) -> None:
    """--models and --budget: one process per combination, so that each reports its own peak RSS."""
    rows = {}
    with tempfile.TemporaryDirectory(prefix="hwocr-bench-models-", dir=ROOT) as tmp:
        if args.budget:
            from synth.words import BUNDLED_WORDS

            with open(BUNDLED_WORDS, encoding="utf-8") as f:
                words = [w for w in f.read().split() if not w.isascii()][:WORDS]
            train_path = make_lmdb(os.path.join(tmp, "train"), BUDGET_TRAIN, words, (PEN, PILGI))
            val_path = make_lmdb(os.path.join(tmp, "val"), BUDGET_VAL, words, (PEN, PILGI), split="val")
        else:
            train_path = make_lmdb(os.path.join(tmp, "train"), MODEL_BATCH * 4)
            val_path = make_lmdb(os.path.join(tmp, "val"), MODEL_BATCH)
        iters = args.budget or args.iters
        for name in args.only or MODELS:
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--model-child", name,
                                  train_path, val_path, os.path.join(tmp, name), str(iters),
                                  "budget" if args.budget else "speed"],
                                 capture_output=True, text=True, check=True)
            rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
            print(name, rows[name], file=sys.stderr, flush=True)
    if args.budget:
        print(f"fixed budget: {iters} iterations of batch {BUDGET_BATCH} at 32x100 (pad), Adam lr 0.001, from "
              f"scratch; {WORDS} words x 2 faces, {BUDGET_TRAIN} train / {BUDGET_VAL} validation images; "
              f"{args.threads} threads")
        print("| combination | best val accuracy | best norm_ED | minutes |\n|---|---:|---:|---:|")
        for name, r in rows.items():
            print(f"| {name} | {r['accuracy']:.2f}% | {r['norm_ed']:.4f} | {r['minutes']:.1f} |")
        return
    anchor = rows[MODELS[0]]["samples_per_s"] if MODELS[0] in rows else None
    print(f"train.model, batch {MODEL_BATCH}, {MODEL_H}x100 (pad), fp32, {args.threads} threads, "
          f"{iters} timed iterations")
    print(f"| combination | samples/s | vs {MODELS[0]} | parameters | peak RSS |\n|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        ratio = f"{r['samples_per_s'] / anchor:.2f}x" if anchor else "-"
        print(f"| {name} | {r['samples_per_s']:.1f} | {ratio} | {r['parameters']:,} | {r['peak_rss_mb']:.0f} MB |")


def bare_rate(data, batch: int, steps: int, precision: str = "fp32", time_first: bool = False) -> float:
    """Samples/s of the bare step (forward, CTC loss, backward, Adadelta) of the default network on `steps` + 1
    batches of `data` already in memory; the first, warm-up step is timed only with time_first (as the loop's own
    window counts it)."""
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
    dtype = torch.bfloat16 if precision == "bf16" else None
    start = time.perf_counter()
    for k, (images, labels) in enumerate(batches):
        if k == 1 and not time_first:
            start = time.perf_counter()
        targets, lengths = codec.encode(labels)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            logits = model(images.contiguous(memory_format=torch.channels_last))
        log_probs = logits.float().log_softmax(2).permute(1, 0, 2)
        loss = ctc(log_probs, targets, torch.full((len(labels),), logits.size(1), dtype=torch.int), lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    timed = len(batches) if time_first else steps
    return timed * batch / (time.perf_counter() - start)


def child(kind: str, lmdb_path: str, iters: int, threads: int, precision: str, out_dir: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    from models.charset import load_charset
    from models.data import LmdbDataset
    from models.train_settings import TrainSettings
    from models.trainer import train
    from synth.effects import EffectsSettings, augmenter

    natural = kind.startswith("natural")
    s = TrainSettings(pretrained="none", precision=precision, threads=threads, num_iter=iters + 1,
                      val_interval=iters + 1, batch_size=BATCH, preprocess="easyocr" if natural else "pad",
                      img_h=int(kind[len("natural"):]) if natural else 80,
                      recompute_layers=RECOMPUTE if kind == "recompute" else 0, compile=kind == "compile",
                      loader_workers=1 if kind == "workers" else "auto",
                      augment=EffectsSettings.all_on() if kind == "augment" else EffectsSettings())
    if kind in ("loop", "recompute", "augment", "compile", "workers") or natural:
        if kind == "compile":  # compile in a first run of one step; the timed run resumes from it
            train(s.model_copy(update={"num_iter": 1, "val_interval": 1}), [lmdb_path], lmdb_path, out_dir,
                  log=lambda m: None)
        result = train(s, [lmdb_path], lmdb_path, out_dir, log=lambda m: None, augment=augmenter(s.augment))
        rate = result["history"][-1]["samples_per_s"]
        gflops = result["history"][-1]["gflops"]
    else:
        data = LmdbDataset(lmdb_path, load_charset("korean_g2"), mode="pad")
        rate = bare_rate(data, BATCH, iters, precision, time_first=True)
        gflops = rate * 2.75
    return {"samples_per_s": rate, "gflops": gflops,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def kinds(args, precision: str) -> list[str]:
    return [k for k in KINDS[precision] if k == "bare" or not args.kinds or k in args.kinds]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=8, help="timed iterations of batch 192 per configuration")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--models", action="store_true", help="rows for train.model's main combinations")
    p.add_argument("--budget", type=int, default=0, help="iterations of the fixed-budget accuracy table")
    p.add_argument("--kinds", nargs="+", choices=list(NAMES), help="these rows only (bare, the anchor, always runs)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--only", nargs="+", help="these combinations instead of the main ones (with --models/--budget)")
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    p.add_argument("--model-child", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.model_child:
        name, train_path, val_path, out_dir, iters, mode = args.model_child
        print(json.dumps(model_child(name, train_path, val_path, int(iters), args.threads, out_dir,
                                     mode == "budget")))
        return
    if args.models or args.budget:
        run_models(args)
        return
    if args.child:
        kind, lmdb_path, precision, out_dir, iters = args.child
        print(json.dumps(child(kind, lmdb_path, int(iters), args.threads, precision, out_dir)))
        return
    rows = {}
    with tempfile.TemporaryDirectory(prefix="hwocr-bench-train-", dir=ROOT) as tmp:
        lmdb_path = make_lmdb(tmp, BATCH * 6)
        for precision in args.precisions:
            for kind in kinds(args, precision):
                out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--child", kind,
                                      lmdb_path, precision, os.path.join(tmp, f"{kind}-{precision}"), str(args.iters)],
                                     capture_output=True, text=True, check=True)
                rows[(kind, precision)] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"train, batch {BATCH}, 80x100, {args.threads} threads, {args.iters} timed iterations")
    print(f"{'':34s} {'samples/s':>10s} {'vs bare':>8s} {'GFLOP/s':>8s} {'peak RSS':>10s}")
    for precision in args.precisions:
        bare = rows[("bare", precision)]["samples_per_s"]
        for kind in kinds(args, precision):
            name, r = NAMES[kind], rows[(kind, precision)]
            print(f"{name + ', ' + precision:34s} {r['samples_per_s']:10.1f} {r['samples_per_s'] / bare:7.2f}x "
                  f"{r['gflops']:8.0f} {r['peak_rss_mb']:8.0f} MB")
    for precision in args.precisions:
        base = rows.get(("loop", precision), {}).get("samples_per_s")
        for kind in ("compile", "workers"):
            if base and (kind, precision) in rows:
                print(f"{NAMES[kind]} vs loop, {precision}: {rows[(kind, precision)]['samples_per_s'] / base:.2f}x")
    loop = rows.get(("loop", "fp32"), {}).get("samples_per_s")
    if loop and ("loop", "bf16") in rows:
        print(f"bf16 loop vs fp32 loop: {rows[('loop', 'bf16')]['samples_per_s'] / loop:.2f}x")


if __name__ == "__main__":
    main()
