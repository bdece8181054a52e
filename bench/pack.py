"""Packing one split of a built dataset: checking images by their shard manifest's sha256 (`pack.check: digest`, the
default) against decoding every image (`decode`, the anchor: how packing checked them before), same gt.txt, the
same LMDB content. Prints seconds, images/s and the ratio; best of --repeat, the two interleaved.

    .venv/bin/python bench/pack.py [--out hwocr-out/cpu-reference] [--split train] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models.lmdb_format import PackSettings, pack  # noqa: E402


def _content(path: str) -> str:
    import hashlib

    import lmdb

    h = hashlib.sha256()
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        for k, v in txn.cursor():
            h.update(k + b"\0" + v)
    env.close()
    return h.hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(ROOT, "hwocr-out", "cpu-reference"),
                   help="an hwocr output folder (`hwocr data` or `hwocr run` wrote it)")
    p.add_argument("--split", default="train")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--tmp", default=os.path.join(ROOT, ".bench-tmp"))
    args = p.parse_args()
    gt = os.path.join(args.out, args.split, "gt.txt")
    if not os.path.exists(gt):
        sys.exit(f"error: {gt} does not exist: build a dataset first (hwocr data --out {args.out})")
    os.makedirs(args.tmp, exist_ok=True)
    times: dict[str, list[float]] = {"decode (anchor)": [], "digest": []}
    samples = 0
    with tempfile.TemporaryDirectory(prefix="pack-", dir=args.tmp) as tmp:
        for r in range(args.repeat):
            for name in times:
                target = os.path.join(tmp, f"{r}-{name.split()[0]}")
                os.sync()
                start = time.perf_counter()
                samples = pack(gt, args.out, target, PackSettings(check=name.split()[0]))["samples"]
                times[name].append(time.perf_counter() - start)
        same = _content(os.path.join(tmp, "0-decode")) == _content(os.path.join(tmp, "0-digest"))
    anchor = min(times["decode (anchor)"])
    print(f"pack {args.split} of {args.out}: {samples:,} images, best of {args.repeat}; same LMDB content: {same}")
    print(f"{'':16s} {'seconds':>8s} {'images/s':>9s} {'vs decode':>10s}")
    for name, secs in times.items():
        best = min(secs)
        print(f"{name:16s} {best:8.2f} {samples / best:9.0f} {anchor / best:9.2f}x")


if __name__ == "__main__":
    main()
