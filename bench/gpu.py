"""The GPU check: the seed's recipe on one GPU, then the DDP path once with one process (NCCL). NOT YET RUN ON A
GPU: no GPU has been lent to this project's tasks so far; only the CPU fallback has run (tests/test_gpu_check.py).

On CUDA: batch 192, 80x100 `preprocess: pad` (the seed's), fp16 AMP (`precision: auto`), loader workers auto,
from random weights (the device machine cannot download korean_g2; --pretrained PATH for a carried one). Without
CUDA (or with --cpu) the fallback: batch 8 at 32x100, fp32, gloo, one loader worker, a few iterations.
The last window's samples/s (after the warm-up window), peak GPU memory (peak RSS on CPU), the loss at each logged
iteration, and the share of the step spent waiting on the loader are printed as `key: value` lines; the goal on
GPU is 10x the seed's 1,143 samples/s.

The LMDBs (train and val) come from --data: built there with hwocr's renderer when absent, so build them here and
let them travel with the tree: `python bench/gpu.py --build-only`.

    bench/gpu.sh [--cpu] [--data DIR] [--iters N]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SEED_SAMPLES_PER_S = 1143  # the seed's training on its GPU


def build(data: str, images: int, val: int) -> None:
    from bench.train import make_lmdb

    for split, n in (("train", images), ("val", val)):
        if not os.path.exists(os.path.join(data, split, "data.mdb")):
            with tempfile.TemporaryDirectory(prefix="hwocr-bench-gpu-", dir=ROOT) as tmp:
                built = make_lmdb(tmp, n, split=split)
                os.makedirs(data, exist_ok=True)
                shutil.move(built, os.path.join(data, split))


def run(s, data: str, out: str, ddp: bool) -> dict:
    import torch

    from models.trainer import train

    os.environ["HWOCR_FORCE_DDP"] = "1" if ddp else "0"
    cuda = torch.cuda.is_available() and s.device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    logs: list[str] = []
    start = time.monotonic()
    result = train(s, [os.path.join(data, "train")], os.path.join(data, "val"), out, log=logs.append)
    last = result["history"][-1]
    losses = {int(m.group(1)): float(m.group(2)) for line in logs if (m := re.match(r"iter (\d+): loss (\S+),", line))}
    return {"samples_per_s": last["samples_per_s"], "loader_wait": last["loader_wait"], "losses": losses,
            "memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "ddp_line": next((m for m in logs if m.startswith("data-parallel")), None),
            "seconds": time.monotonic() - start, "precision": result["precision"], "device": result["device"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="the CPU fallback even where CUDA is present")
    p.add_argument("--data", default=os.path.join(ROOT, "bench", "gpu-data"), help="train/ and val/ LMDBs")
    p.add_argument("--images", type=int, default=4096, help="training images to render when --data lacks them")
    p.add_argument("--iters", type=int, default=0, help="iterations (default 600 on CUDA, 6 on CPU)")
    p.add_argument("--workers", default="auto", help="train.loader_workers")
    p.add_argument("--pretrained", default="none")
    p.add_argument("--compile", action="store_true", help="train.compile")
    p.add_argument("--build-only", action="store_true", help="build the LMDBs and stop")
    args = p.parse_args()

    import torch

    from models.train_settings import TrainSettings

    cuda = torch.cuda.is_available() and not args.cpu
    if args.build_only or not os.path.exists(os.path.join(args.data, "train", "data.mdb")):
        build(args.data, args.images if cuda or args.build_only else 64, 512 if cuda or args.build_only else 16)
    if args.build_only:
        print(f"built {args.data}")
        return
    iters = args.iters or (600 if cuda else 6)
    workers = args.workers if args.workers == "auto" else int(args.workers)
    common = dict(pretrained=args.pretrained, preprocess="pad", optimizer="adadelta", lr=1.0, seed=1111,
                  compile=args.compile)
    if cuda:  # the seed's recipe; 3 windows, the first one the warm-up
        s = TrainSettings(**common, device="cuda", precision="auto", batch_size=192, img_h=80, img_w=100,
                          num_iter=iters, val_interval=iters // 3, loader_workers=workers)
        ddp_iters = max(10, iters // 6)
    else:
        s = TrainSettings(**common, device="cpu", precision="fp32", batch_size=8, img_h=32, img_w=100,
                          num_iter=iters, val_interval=iters // 2, loader_workers=1 if workers == "auto" else workers,
                          threads=os.cpu_count() or 1)
        ddp_iters = iters // 2
    name = torch.cuda.get_device_name() if cuda else "cpu (fallback: gloo, fp32, tiny sizes)"
    print(f"device: {name}")
    print(f"recipe: batch {s.batch_size}, {s.img_h}x{s.img_w} pad, {iters} iterations, loader_workers "
          f"{s.loader_workers}, compile {s.compile}")
    with tempfile.TemporaryDirectory(prefix="hwocr-bench-gpu-", dir=ROOT) as tmp:
        plain = run(s, args.data, os.path.join(tmp, "plain"), ddp=False)
        ddp = run(s.model_copy(update={"num_iter": ddp_iters, "val_interval": ddp_iters}), args.data,
                  os.path.join(tmp, "ddp"), ddp=True)
    print(f"precision: {plain['precision']}")
    print(f"samples/s: {plain['samples_per_s']:.1f}")
    if cuda:
        print(f"vs seed's {SEED_SAMPLES_PER_S} samples/s: {plain['samples_per_s'] / SEED_SAMPLES_PER_S:.2f}x")
    print(f"{'gpu memory' if cuda else 'peak rss'} MiB: {plain['memory_mb']:.0f}")
    print(f"loader share: {100 * plain['loader_wait']:.1f}%")
    for it, loss in sorted(plain["losses"].items()):
        print(f"loss at {it}: {loss:.4f}")
    print(f"train seconds: {plain['seconds']:.1f}")
    print(f"ddp: {ddp['ddp_line']}")
    same = sorted(set(ddp["losses"]) & set(plain["losses"]))
    for it in same:
        print(f"ddp loss at {it}: {ddp['losses'][it]:.4f} (without DDP {plain['losses'][it]:.4f})")
    print(f"ddp samples/s: {ddp['samples_per_s']:.1f}")


if __name__ == "__main__":
    main()
