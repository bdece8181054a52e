"""hwocr prelabel's reading speed on stand-in scans: pages a second, the detector and the recognizer apart, against
EasyOCR's own readtext on the same pages (the anchor: what a user would otherwise run, one process, page by page).

    .venv/bin/python bench/prelabel.py --bundle RUN/easyocr [--pages 10] [--seed 0]

Rows, each one EasyOCR process start included (as prelabel starts them, per shard of up to 25 images):
- detector: Reader.detect on every page (readtext's settings, no margin), alone;
- prelabel: models/prelabeling.py's read_images on the pages (the detector, the crops cut as a pages source cuts
  them, the recognizer on the crops), whole; the recognizer's row is prelabel less detector;
- readtext (anchor): readtext on every page in one process, as the pipeline's check reads pages (Reader.detect,
  then Reader.recognize in the boxes: readtext, bit for bit; tests/test_pages.py).
Prints seconds, pages a second and prelabel's ratio to readtext, and asserts that prelabel's texts are readtext's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True, help="an exported bundle folder (with craft_mlt_25k.pth)")
    ap.add_argument("--pages", type=int, default=10, help="stand-in pages to draw (A4 at 150 dpi, 8 to 14 words)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from flows.cli import STANDIN_FAMILIES
    from models.easyocr_venv import bundle_name, run_in_easyocr
    from models.pages import PageSet
    from models.prelabeling import PrelabelSettings, read_images
    from synth.scans import families_fonts, make_scans

    name = bundle_name(args.bundle)
    with tempfile.TemporaryDirectory(prefix="hwocr-bench-prelabel-") as tmp:
        words = [w.strip() for w in open(os.path.join(ROOT, "synth", "data", "words_ko_freq.txt"), encoding="utf-8")
                 if w.strip()]
        scans = make_scans(os.path.join(tmp, "scans"), families_fonts(STANDIN_FAMILIES), words, pages=args.pages,
                           seed=args.seed)
        pages_dir = os.path.join(scans["dir"], "pages")
        names = sorted(n for n in os.listdir(pages_dir) if n.endswith(".jpg"))
        paths = [os.path.join(pages_dir, n) for n in names]
        settings = PrelabelSettings(kind="pages")
        detect = {"read": "detect", "detector": args.bundle, "paths": paths,
                  "settings": {**settings.detector.model_dump(), "add_margin": 0.0}}
        t = time.perf_counter()
        run_in_easyocr(args.bundle, name, [detect])
        detector = time.perf_counter() - t
        t = time.perf_counter()
        rows = read_images(args.bundle, pages_dir, names, settings, os.path.join(tmp, "scratch"))
        prelabel = time.perf_counter() - t
        t = time.perf_counter()
        readtext = run_in_easyocr(args.bundle, name, PageSet([], paths).jobs(args.bundle))[1]
        anchor = time.perf_counter() - t
    assert [[w["transcription"] for w in r["words"]] for r in rows] == [[t for _, t, _ in p] for p in readtext]
    n = len(paths)
    words = sum(len(r["words"]) for r in rows)
    print(f"{n} stand-in pages (1240 x 1754), {words} words found; torch threads as EasyOCR sets them")
    for what, s in (("detector", detector), ("recognizer (prelabel - detector)", prelabel - detector),
                    ("prelabel, whole", prelabel), ("readtext (anchor)", anchor)):
        print(f"{what:34s} {s:7.2f} s  {n / s:6.3f} pages/s")
    print(f"prelabel / readtext: {anchor / prelabel:.2f}x the anchor's speed; texts identical")


if __name__ == "__main__":
    main()
