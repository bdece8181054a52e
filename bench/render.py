"""Render throughput: hwocr's render stage vs the trdg CLI (anchor) vs a bare PIL loop (practical limit).

All draw the same words with the same fonts at the seed's settings (80 px, plain white, no margins,
random skew within 15 degrees), PNG, on all cores. Prints images/s and ratios against the trdg CLI. hwocr and the
PIL loop are timed on process pools already started, as the dataset flow starts its render pool while it plans;
the CLI starts its own.

    .venv/bin/python bench/render.py [--count 6000] [--workers N]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from synth import trdg_driver  # noqa: E402
from synth.render_settings import RenderSettings  # noqa: E402
from synth.words import BUNDLED_WORDS  # noqa: E402

FONTS = [
    "/usr/share/fonts/truetype/nanum/NanumPen.ttf",
    "/usr/share/fonts/truetype/nanum/NanumBrush.ttf",
    "/usr/share/fonts/truetype/unfonts-core/UnPilgi.ttf",
    "/usr/share/fonts/truetype/unfonts-extra/UnPen.ttf",
]


def trdg_cli(words: str, count: int, workers: int, tmp: str) -> float:
    font_dir = os.path.join(tmp, "fonts")
    os.makedirs(font_dir, exist_ok=True)
    for f in FONTS:  # trdg's --font_dir keeps only lowercase .ttf names
        shutil.copy(f, os.path.join(font_dir, os.path.basename(f).lower()))
    out = os.path.join(tmp, "cli")
    cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "_trdg_cli.py"), "-i", words, "-c", str(count),
           "-l", "ko", "-f", "80", "-b", "1", "-m", "0,0,0,0", "-k", "15", "-rk", "-t", str(workers),
           "-fd", font_dir, "-e", "png", "-im", "L", "-na", "2", "--output_dir", out]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t
    made = len([n for n in os.listdir(out) if n.endswith(".png")])
    assert made >= count * 0.98, f"trdg CLI wrote {made} of {count} images"
    return elapsed


def _warm(ex: concurrent.futures.ProcessPoolExecutor, workers: int, fn) -> None:
    """Start every worker of ex and run fn in it (its imports) before the timing, as the dataset flow warms its
    render pool while it plans (synth/pool.warm_pool)."""
    while len(set(ex.map(fn, range(4 * workers)))) < workers:
        pass


def _hwocr_ready(_) -> int:
    return os.getpid()  # the pool's initializer imported synth.trdg_driver


def hwocr_stage(words: list[str], count: int, workers: int, tmp: str) -> float:
    """The render stage as the flow runs it: shards of count / 32 images per font, each cut into pieces
    (tasks/render.py) on the warm process pool, joined into images.tar, labels.tsv and manifest.json by threads."""
    from synth.pool import PIECE_IMAGES

    settings = RenderSettings(workers=workers).pixel_settings()
    per_font = count // len(FONTS)
    chunk = -(-count // 32)
    shards = [trdg_driver.RenderJob(settings=settings, words=words, covered="".join(set("".join(words))),
                                    split="train", font_sha=f"{i:064d}", font_path=f, start=s,
                                    stop=min(s + chunk, per_font), key="bench", dir=os.path.join(tmp, "hw", f"{i}-{s}"))
              for s in range(0, per_font, chunk) for i, f in enumerate(FONTS)]
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=trdg_driver.init_worker) as ex, \
            concurrent.futures.ThreadPoolExecutor(workers + 4) as threads:
        _warm(ex, workers, _hwocr_ready)

        def shard(job):
            step = max(PIECE_IMAGES, -(-(job.stop - job.start) // 4))
            parts = [ex.submit(trdg_driver.render_range, job.model_copy(update={"start": a, "stop": min(a + step,
                                                                                                    job.stop)}))
                     for a in range(job.start, job.stop, step)]
            return trdg_driver.write_manifest(job, [p.result() for p in parts])["counts"]["images"]

        t = time.perf_counter()
        done = sum(threads.map(shard, shards))
        elapsed = time.perf_counter() - t
    assert done == per_font * len(FONTS)
    return elapsed


def _pil_ready(_) -> int:
    from PIL import Image, ImageDraw, ImageFont  # noqa: F401

    return os.getpid()


def _pil_chunk(args) -> int:
    from PIL import Image, ImageDraw, ImageFont

    words, font_path, n, seed, out = args
    font = ImageFont.truetype(font_path, 80)
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    for i in range(n):
        word = words[rng.randrange(len(words))]
        left, top, right, bottom = font.getbbox(word)
        img = Image.new("L", (right, bottom), 255)
        ImageDraw.Draw(img).text((0, 0), word, font=font, fill=40)
        img = img.rotate(rng.randint(-15, 15), expand=1, fillcolor=255)
        img = img.resize((max(1, int(img.width * 80 / img.height)), 80), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        with open(os.path.join(out, f"{i}.png"), "wb") as f:
            f.write(buf.getvalue())
    return n


def pil_loop(words: list[str], count: int, workers: int, tmp: str) -> float:
    per_font = count // len(FONTS)
    jobs = [(words, f, per_font, i, os.path.join(tmp, "pil", str(i))) for i, f in enumerate(FONTS)]
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        _warm(ex, workers, _pil_ready)
        t = time.perf_counter()
        assert sum(ex.map(_pil_chunk, jobs)) == per_font * len(FONTS)
        return time.perf_counter() - t


def file_creation_ms(folder: str, n: int = 2000) -> float:
    """Kernel cost of creating one empty file here: the CLI and the PIL loop pay it once per image, hwocr's workers
    once per piece of a few hundred images (they write archive members, not image files)."""
    os.makedirs(folder)
    t = time.perf_counter()
    for i in range(n):
        os.close(os.open(os.path.join(folder, f"{i:09d}.png"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    return (time.perf_counter() - t) / n * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--tmp", default=os.path.join(ROOT, ".bench-tmp"),
                   help="scratch folder (file creation in /tmp is 20x slower than elsewhere on some machines)")
    args = p.parse_args()
    with open(BUNDLED_WORDS, encoding="utf-8") as f:
        words = f.read().split()
    count = args.count - args.count % (4 * len(FONTS))
    os.makedirs(args.tmp, exist_ok=True)
    contenders = {
        "trdg CLI (anchor)": trdg_cli,
        "hwocr render stage": hwocr_stage,
        "PIL-only loop (limit)": pil_loop,
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory(prefix="render-", dir=args.tmp) as tmp:
        words_file = os.path.join(tmp, "words.txt")
        with open(words_file, "w", encoding="utf-8") as f:
            f.write("\n".join(words) + "\n")
        # Interleaved rounds, flushing the disk before each, and nothing deleted until the end: file creation
        # slows down while the disk writes back or discards an earlier contender's files.
        for r in range(args.repeat):
            for name, fn in contenders.items():
                os.sync()
                scratch = os.path.join(tmp, f"{r}-{len(times[name])}-{list(contenders).index(name)}")
                times[name].append(fn(words_file if fn is trdg_cli else words, count, args.workers, scratch))
        create_ms = file_creation_ms(os.path.join(tmp, "create-probe"))
    best = {name: min(t) for name, t in times.items()}
    anchor = count / best["trdg CLI (anchor)"]
    print(f"render {count} images, 80 px PNG, {len(FONTS)} fonts, {args.workers} processes, best of {args.repeat}")
    print(f"{'':24s} {'seconds':>8s} {'images/s':>9s} {'vs trdg CLI':>12s}   all runs (s)")
    for name, secs in best.items():
        rate = count / secs
        runs = " ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:24s} {secs:8.2f} {rate:9.0f} {rate / anchor:11.2f}x   {runs}")
    print(f"creating one empty file in {args.tmp}: {create_ms:.3f} ms (paid per image by the CLI and the PIL loop)")


if __name__ == "__main__":
    main()
