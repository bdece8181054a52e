"""What EasyOCR's detector cuts: the margins of readtext's crops around a word's ink, measured on composed pages.

A split's word images are composed into pages (models/pages.py, as the pages evaluation composes them), CRAFT runs
on them with readtext's defaults (add_margin 0.1 included) through the real easyocr, and every box that covers
exactly one word's ink (and that word no other box) gives that crop's four margins: top, bottom, left and right,
from the ink's edge to the box's, in multiples of the ink's height (negative: the box cuts into the ink). Boxes
over several words (EasyOCR merged them), words split over several boxes and boxes that cut more than CUT of the
ink's height off a side (part of the word is in another box or none: such a crop no longer shows its label) are
counted and left out.

    .venv/bin/python bench/craft_margins.py --data LMDB [--limit 1000] [--write]

--write stores the margins in synth/data/craft_margins.json, where the `craft_crop` effect draws them from. Use a
split of the training fonts (validation), never the held-out families: the table becomes training data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from synth.effects import CRAFT_CUT as CUT  # noqa: E402 - the most a kept crop cuts into the ink, in ink heights

OUT = os.path.join(ROOT, "synth", "data", "craft_margins.json")


def margins(words, found) -> tuple[list[list[float]], dict]:
    """Per page: words (models.pages.Word, box = ink) and found ([horizontal_list, free_list] of detect())."""
    rects = [(x0, y0, x1, y1) for x0, x1, y0, y1 in found[0]]
    for quad in found[1]:
        xs, ys = [p[0] for p in quad], [p[1] for p in quad]
        rects.append((min(xs), min(ys), max(xs), max(ys)))

    def centre_in(w, r) -> bool:
        cx, cy = (w.box[0] + w.box[2]) / 2, (w.box[1] + w.box[3]) / 2
        return r[0] <= cx <= r[2] and r[1] <= cy <= r[3]

    holds = [[k for k, w in enumerate(words) if centre_in(w, r)] for r in rects]
    boxes_of = [sum(k in h for h in holds) for k in range(len(words))]
    out, merged, cut = [], 0, 0
    for r, h in zip(rects, holds):
        if len(h) > 1:
            merged += 1
        if len(h) != 1 or boxes_of[h[0]] != 1:
            continue
        x0, y0, x1, y1 = words[h[0]].box
        ink_h = max(y1 - y0, 1)
        row = [round((y0 - r[1]) / ink_h, 3), round((r[3] - y1) / ink_h, 3),
               round((x0 - r[0]) / ink_h, 3), round((r[2] - x1) / ink_h, 3)]
        if min(row) < -CUT:
            cut += 1
            continue
        out.append(row)
    return out, {"merged_boxes": merged, "split_words": sum(n > 1 for n in boxes_of),
                 "missed_words": sum(n == 0 for n in boxes_of), "cut_words": cut}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="LMDB folder of a split of the training fonts (validation)")
    p.add_argument("--limit", type=int, default=1000, help="the first N images")
    p.add_argument("--seed", type=int, default=0, help="the pages' layout")
    p.add_argument("--write", action="store_true", help=f"store the margins in {os.path.relpath(OUT, ROOT)}")
    args = p.parse_args()

    import numpy as np

    from models.charset import load_charset
    from models.data import LmdbDataset
    from models.easyocr_venv import run_in_easyocr
    from models.pages import detections_cache, detector_dir, write_pages
    from models.pretrained import CRAFT

    data = LmdbDataset(args.data, load_charset("korean_g2"), 10_000)
    n = min(args.limit, len(data))
    images, labels = [data.raw_image(i) for i in range(n)], [data.labels[i] for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="hwocr-margins-") as scratch:
        pages, paths = write_pages(images, labels, scratch, seed=args.seed)
        detect = {"read": "detect", "detector": detector_dir(), "paths": paths, "cache": detections_cache()}
        [found] = run_in_easyocr("-", "-", [detect])
    table, counts = [], {"merged_boxes": 0, "split_words": 0, "missed_words": 0, "cut_words": 0}
    for page, boxes in zip(pages, found):
        rows, c = margins(page.words, boxes)
        table += rows
        counts = {k: counts[k] + c[k] for k in counts}
    if not table:
        raise SystemExit("no box held exactly one word: nothing measured")
    a = np.array(table)
    print(f"{len(table)} crops of {n} words on {len(pages)} pages; {counts}")
    print("margin, in ink heights    p5      p25     median  p75     p95")
    for k, side in enumerate(("top", "bottom", "left", "right")):
        q = np.percentile(a[:, k], [5, 25, 50, 75, 95])
        print(f"{side:<25}" + "".join(f"{v:+.3f}  " for v in q))
    if args.write:
        digest = hashlib.sha256(json.dumps(table).encode()).hexdigest()[:16]
        record = {"what": "readtext's crops (CRAFT, add_margin 0.1) around a word's ink, in ink heights: "
                          "[top, bottom, left, right]; bench/craft_margins.py",
                  "data": os.path.basename(os.path.normpath(args.data)), "words": n, "detector_md5": CRAFT.md5,
                  **counts, "digest": digest, "margins": table}
        with open(OUT, "w", encoding="utf-8") as f:
            json.dump(record, f, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {os.path.relpath(OUT, ROOT)} ({len(table)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
