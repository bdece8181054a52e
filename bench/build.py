"""Whole dataset build: `hwocr data` vs the seed's three manual steps, as a user runs them.

Anchor (the seed): trdg CLI for train and validation, a gt.txt conversion of trdg's file names, and a packer
that behaves like deep-text-recognition-benchmark's create_lmdb_dataset.py. hwocr: one `hwocr data` process
on the seed preset, Prefect's ephemeral start-up included. Both write the seed's encoding (RGB JPEG, Pillow's
default quality); a third row shows hwocr's own default (grayscale PNG). Prints seconds and the ratio.

    .venv/bin/python bench/build.py [--scale 1.0]      # 1.0 = the seed's 100,000 + 1,000 images
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.render import FONTS  # noqa: E402
from synth.words import BUNDLED_WORDS  # noqa: E402

SEED_FLAGS = ["-l", "ko", "-f", "80", "-b", "1", "-m", "0,0,0,0", "-k", "15", "-rk"]


def _run(cmd: list[str], env=None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def seed_steps(train: int, val: int, workers: int, tmp: str) -> float:
    font_dir = os.path.join(tmp, "fonts")
    os.makedirs(font_dir)
    for f in FONTS:
        shutil.copy(f, os.path.join(font_dir, os.path.basename(f).lower()))
    cli = [sys.executable, os.path.join(ROOT, "bench", "_trdg_cli.py")]
    steps = [sys.executable, os.path.join(ROOT, "bench", "_seed_steps.py")]
    total = 0.0
    for split, n in (("train", train), ("validation", val)):
        out = os.path.join(tmp, "trdg", split)
        total += _run(cli + ["-i", BUNDLED_WORDS, "-c", str(n), "-t", str(workers), "-fd", font_dir,
                             "--output_dir", out] + SEED_FLAGS)
        gt = os.path.join(tmp, f"gt_{split}.txt")
        total += _run(steps + ["gt", out, gt])
        total += _run(steps + ["pack", out, gt, os.path.join(tmp, "data_lmdb", split)])
    return total


def hwocr(train: int, val: int, workers: int, tmp: str, *extra: str, prefect_home: str = "") -> float:
    env = {**os.environ, "PREFECT_HOME": prefect_home}
    fonts = "[" + ", ".join(FONTS) + "]"
    cmd = [os.path.join(ROOT, ".venv", "bin", "hwocr"), "data", "--config", "seed", "--out", os.path.join(tmp, "out"),
           "--json", "--set", f"render.count={train}", "--set", f"render.val_count={val}",
           "--set", f"render.workers={workers}", "--set", f"render.fonts={fonts}",
           "--set", "render.regression_count=0"]  # the seed's steps render train and val only
    for e in extra:
        cmd += ["--set", e]
    return _run(cmd, env)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the seed's 100,000 + 1,000 images")
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--tmp", default=os.path.join(ROOT, ".bench-tmp"))
    args = p.parse_args()
    train, val = int(100_000 * args.scale), max(1, int(1_000 * args.scale))
    os.makedirs(args.tmp, exist_ok=True)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="build-", dir=args.tmp) as tmp:
        # A user's Prefect database exists after the first run ever; create it outside the timing.
        home = os.path.join(tmp, "prefect")
        hwocr(10, 2, 1, os.path.join(tmp, "warmup"), "render.min_shard_images=1", prefect_home=home)
        jobs = {
            "seed's 3 steps (anchor)": lambda d: seed_steps(train, val, args.workers, d),
            "hwocr data, seed encoding": lambda d: hwocr(train, val, args.workers, d, "render.image_format=jpg",
                                                         "render.grayscale=false", "render.jpeg_quality=75",
                                                         prefect_home=home),
            "hwocr data, default PNG": lambda d: hwocr(train, val, args.workers, d, prefect_home=home),
        }
        for i, (name, job) in enumerate(jobs.items()):
            os.sync()
            d = os.path.join(tmp, str(i))
            os.makedirs(d)
            rows[name] = job(d)
    anchor = rows["seed's 3 steps (anchor)"]
    print(f"build {train:,} train + {val:,} validation images, {len(FONTS)} fonts, {args.workers} processes")
    print(f"{'':28s} {'seconds':>8s} {'vs seed':>8s}")
    for name, secs in rows.items():
        print(f"{name:28s} {secs:8.1f} {anchor / secs:7.2f}x")


if __name__ == "__main__":
    main()
