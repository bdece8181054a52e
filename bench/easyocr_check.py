"""The pipeline's EasyOCR cross-check, its recognize() readings: every word of a split read float and int8 by
per-image `reader.recognize(gray)` (the anchor: how the check read them before), against
models/easyocr_read.py's recognize_like (same-width images through one get_text call, the network still run on
each image alone), in one EasyOCR process, the images decoded once. Asserts the readings are identical (text and
confidence, bit for bit) and prints seconds and the ratio: the words in slices of 100, each slice read by the two
in turn --repeat times, a contender's seconds the sum of its slices' best.

    .venv/bin/python bench/easyocr_check.py --bundle RUN/easyocr --lmdb OUT/lmdb/val [--repeat 2] [--pages 200]

With --pages N it also times what else the check costs, once: importing easyocr, building the Readers, and
readtext (the CRAFT detector, default settings) on the first N words composed into pages, as the check composes
them (models/pages.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK = 100  # words a timed slice


def inner(bundle: str, name: str, jobs_file: str, repeat: int) -> None:
    """In EasyOCR's venv: the timings, as one JSON line."""
    t0 = time.perf_counter()
    import easyocr
    import torch

    sys.path.insert(0, os.path.join(ROOT, "models"))
    import easyocr_read

    with open(jobs_file, encoding="utf-8") as f:
        job = json.load(f)
    times: dict = {"import": time.perf_counter() - t0, "threads": torch.get_num_threads()}
    readers = {}
    for quantize in (False, True):
        t = time.perf_counter()
        readers[quantize] = easyocr.Reader(["ko"], gpu=False, detector=not quantize and bool(job["pages"]),
                                           recog_network=name, quantize=quantize, user_network_directory=bundle,
                                           model_storage_directory=bundle, download_enabled=False, verbose=False)
        times[f"reader {'int8' if quantize else 'float'}"] = time.perf_counter() - t
    # The machine is shared and bursts of load from elsewhere cost seconds: the words go in slices of CHUNK,
    # each slice read by both contenders in turn, repeat times; a contender's figure is the sum of its slices' best.
    names = ("per-image recognize() (anchor)", "recognize_like")
    rows: dict[str, list[list[float]]] = {k: [] for k in names}
    paths = job["paths"]
    for s in range(0, len(paths), CHUNK):
        chunk, best = paths[s:s + CHUNK], {k: [] for k in names}
        for _ in range(repeat):
            t = time.perf_counter()
            anchor = []
            for quantize in (False, True):
                # as the check read them before: each job decoded its own images
                grays = [easyocr_read.cv2_gray(p) for p in chunk]
                anchor.append([tuple(readers[quantize].recognize(g)[0][1:]) for g in grays])
            best[names[0]].append(time.perf_counter() - t)
            easyocr_read._GRAYS.clear()
            t = time.perf_counter()
            grays = [easyocr_read.gray(p) for p in chunk]
            new = [easyocr_read.recognize_like(readers[quantize], grays) for quantize in (False, True)]
            best[names[1]].append(time.perf_counter() - t)
            for kind, a, b in zip(("float", "int8"), anchor, new):
                diff = [i for i, (x, y) in enumerate(zip(a, b)) if x[0] != y[0] or x[1] != y[1]]
                assert not diff, f"{kind}: {len(diff)} readings differ, first {chunk[diff[0]]}"
        for k in names:
            rows[k].append(best[k])
    times["rows"] = rows
    if job["pages"]:
        t = time.perf_counter()
        times["pages"] = [_timed(readers[False].readtext, p) for p in job["pages"]]
        times["readtext"] = time.perf_counter() - t
    print(json.dumps(times))


def _timed(f, *args) -> float:
    t = time.perf_counter()
    f(*args)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, help="an exported bundle (hwocr export's folder)")
    ap.add_argument("--lmdb", required=True, help="the split's LMDB")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--pages", type=int, default=0, help="also time readtext on this many words composed into pages")
    ap.add_argument("--inner", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.inner:
        inner(a.bundle, a.inner[0], a.inner[1], int(a.inner[2]))
        return 0
    sys.path.insert(0, ROOT)
    from models.easyocr_venv import bundle_name, easyocr_python
    from models.pages import write_pages
    from models.reading import open_model

    _, reading = open_model(a.bundle)
    data = reading.dataset(a.lmdb)
    with tempfile.TemporaryDirectory(prefix="bench-easyocr-") as tmp:
        images = [data.raw_image(i) for i in range(len(data))]
        paths = [os.path.join(tmp, f"{i}.png") for i in range(len(images))]
        for image, path in zip(images, paths):
            image.save(path)
        n = min(a.pages, len(images))
        _, pages = write_pages(images[:n], list(data.labels[:n]), os.path.join(tmp, "pages")) if n else (None, [])
        jobs_file = os.path.join(tmp, "job.json")
        with open(jobs_file, "w", encoding="utf-8") as f:
            json.dump({"paths": paths, "pages": pages}, f)
        proc = subprocess.run([easyocr_python(), __file__, "--bundle", a.bundle, "--lmdb", a.lmdb, "--inner",
                               bundle_name(a.bundle), jobs_file, str(a.repeat)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": ""})
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    t = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{len(paths)} words of {a.lmdb}, float and int8, torch threads {t['threads']}, slices of {CHUNK}, "
          f"each the best of {a.repeat}, "
          "readings identical (text and confidence)")
    seconds = {row: sum(min(s) for s in slices) for row, slices in t["rows"].items()}
    anchor = seconds["per-image recognize() (anchor)"]
    print("| contender | seconds | images/s | vs anchor |\n|---|---:|---:|---:|")
    for row, secs in seconds.items():
        print(f"| {row} | {secs:.2f} | {2 * len(paths) / secs:,.0f} | {anchor / secs:.2f}x |")
    print(f"import easyocr {t['import']:.2f} s, Reader float{' with the detector' if pages else ''} "
          f"{t['reader float']:.2f} s, int8 {t['reader int8']:.2f} s")
    if pages:
        print(f"readtext on {len(pages)} pages of {n} words: {t['readtext']:.2f} s "
              f"({', '.join(f'{s:.1f}' for s in t['pages'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
