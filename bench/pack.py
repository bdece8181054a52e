"""Packing one split of a built dataset: checking images by their shard manifest's sha256 (`pack.check: digest`, the
default) against decoding every image (`decode`, the anchor: how packing checked them before), same gt.txt, the
same LMDB content. Prints seconds, images/s and the ratio; best of --repeat, the two interleaved.

    .venv/bin/python bench/pack.py [--out hwocr-out/cpu-reference] [--split train] [--repeat 2]

With --real DIR (a stand-in set, `hwocr scans --out DIR`): a real source of pages packed (its word boxes cut from
the page images as EasyOCR cuts them, models/sources.py) and the same set's crops as an easyocr source, against
`hwocr pack` of those crops (the anchor: the same words, already cut).

    .venv/bin/python bench/pack.py --real /tmp/standin [--repeat 2]
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


def real_rows(folder: str, tmp: str, repeat: int) -> None:
    import csv

    from models.charset import load_charset
    from models.sources import RealSettings, SourceSettings, import_source

    crops = os.path.join(folder, "easyocr")
    with open(os.path.join(crops, "labels.csv"), encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    gt = os.path.join(tmp, "gt.txt")
    with open(gt, "w", encoding="utf-8") as f:
        f.writelines(f"{name}\t{label}\n" for name, label in rows)
    charset = load_charset("korean_g2")
    sources = {"easyocr source": os.path.join(folder, "easyocr"), "pages source": os.path.join(folder, "pages")}
    times: dict[str, list[float]] = {"hwocr pack (anchor)": [], **{k: [] for k in sources}}
    counts: dict[str, int] = {}
    for r in range(repeat):
        for name in times:
            target = os.path.join(tmp, f"{r}-{name.split()[0]}")
            os.sync()
            start = time.perf_counter()
            if name in sources:
                s = SourceSettings(name="bench", url=sources[name], split="train")
                report = import_source(s, RealSettings(sources=[s]), charset, 25, target, PackSettings())
                counts[name] = report["splits"]["train"]["samples"]
            else:
                counts[name] = pack(gt, crops, target, PackSettings(check="decode"))["samples"]
            times[name].append(time.perf_counter() - start)
    anchor = min(times["hwocr pack (anchor)"]) / counts["hwocr pack (anchor)"]
    print(f"real sources of {folder}: {counts['pages source']:,} words, best of {repeat}")
    print(f"{'':20s} {'images':>7s} {'seconds':>8s} {'images/s':>9s} {'vs hwocr pack':>14s}")
    for name, secs in times.items():
        best = min(secs)
        print(f"{name:20s} {counts[name]:7d} {best:8.2f} {counts[name] / best:9.0f} "
              f"{anchor / (best / counts[name]):13.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(ROOT, "hwocr-out", "cpu-reference"),
                   help="an hwocr output folder (`hwocr data` or `hwocr run` wrote it)")
    p.add_argument("--split", default="train")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--tmp", default=os.path.join(ROOT, ".bench-tmp"))
    p.add_argument("--real", help="a stand-in set (hwocr scans): time real sources instead of a split")
    args = p.parse_args()
    if args.real:
        os.makedirs(args.tmp, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="pack-real-", dir=args.tmp) as tmp:
            real_rows(args.real, tmp, args.repeat)
        return
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
