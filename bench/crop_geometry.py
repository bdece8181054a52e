"""Crop geometry: how a checkpoint reads a split's images as rendered (the anchor) and cut around their ink.

trdg's images keep the blank space of the font's line metrics (at the presets' settings the ink spans about three
quarters of the height), while another renderer, a user's annotated boxes or a detector may crop closer. Each
geometry below re-crops every image of the split to its ink's bounding box plus MARGIN x the ink's height on every
side (0: cropped to the ink), padding with the image's paper tone where the margin runs past the image, and scores
the checkpoint with `hwocr evaluate`'s own code; the images stay the split's, so only the geometry differs. Prints
accuracy per geometry and its difference in points from the anchor, per font too when the split is hwocr's.

    .venv/bin/python bench/crop_geometry.py --model CHECKPOINT --data LMDB [--config cpu-reference]
                                            [--set KEY=VALUE ...] [--margins 0,0.1,0.25] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from synth.effects import ink_extent  # noqa: E402  - the ink as pad_crop sees it


def recrop(img: Image.Image, margin: float) -> Image.Image:
    """img cut to its ink's box plus margin x the ink's height on each side, padded with the paper's tone."""
    gray = img.convert("L")
    a = np.asarray(gray)
    paper = int(a.max())
    rows, cols = ink_extent(a)
    if not rows.size:
        return gray
    m = int(round(margin * (rows[-1] - rows[0] + 1)))
    box = (int(cols[0]) - m, int(rows[0]) - m, int(cols[-1]) + 1 + m, int(rows[-1]) + 1 + m)
    out = Image.new("L", (box[2] - box[0], box[3] - box[1]), paper)
    out.paste(gray.crop((max(box[0], 0), max(box[1], 0), min(box[2], a.shape[1]), min(box[3], a.shape[0]))),
              (max(-box[0], 0), max(-box[1], 0)))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint (.pth)")
    p.add_argument("--data", required=True, help="LMDB folder (a split hwocr packed, for the per-font rows)")
    p.add_argument("--config", default="cpu-reference", help="preset whose train section reads the checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--margins", default="0,0.1,0.25", help="margins around the ink, in ink heights")
    p.add_argument("--limit", type=int, default=0, help="the first N images only (0: all)")
    p.add_argument("--out", default=os.path.join(ROOT, ".bench-tmp", "crop_geometry"))
    args = p.parse_args()

    from flows.config import given_keys, load_config
    from models import metrics
    from models.charset import load_charset
    from models.data import LmdbDataset
    from models.evaluation import evaluate_checkpoint, fonts_of

    config = load_config(args.config, args.set)
    settings = config.train
    margins = [float(m) for m in args.margins.split(",")]
    data = LmdbDataset(args.data, load_charset(settings.charset), settings.batch_max_length)
    n = min(args.limit or len(data), len(data))
    reports = {}
    with tempfile.TemporaryDirectory(prefix="crop-geometry-") as tmp:
        for margin in [None, *margins]:  # None: the anchor, the images as rendered, through the same path
            folder = os.path.join(tmp, f"margin-{margin}")
            os.makedirs(folder)
            rows = []
            for i in range(n):
                img = data.raw_image(i)
                name = f"{i:06d}.png"
                (img.convert("L") if margin is None else recrop(img, margin)).save(os.path.join(folder, name))
                rows.append(f"{name}\t{data.labels[i]}")
            with open(os.path.join(folder, "gt.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(rows) + "\n")
            name = "as rendered" if margin is None else f"ink + {margin:g} x height"
            reports[name] = evaluate_checkpoint(args.model, folder, os.path.join(args.out, f"margin-{margin}"),
                                                settings, given_keys(settings, "train."))
    fonts = fonts_of(args.data, len(data))
    fonts = fonts[:n] if fonts else None
    anchor = reports["as rendered"]
    print(f"{n} images of {args.data}, {args.model}")
    print(f"{'geometry':<22} {'accuracy':>9} {'vs anchor':>10} {'CER':>7}")
    for name, r in reports.items():
        print(f"{name:<22} {r['accuracy']:>8.1f}% {r['accuracy'] - anchor['accuracy']:>+9.1f} {r['cer']:>7.3f}"
              + ("  (anchor)" if r is anchor else ""))
    if fonts:
        print(f"  {'per font':<34} " + " ".join(f"{'anchor' if k == 'as rendered' else k.split()[2]:>6}"
                                                for k in reports))
        per_font = [metrics.breakdown(preds, gts, fonts) for gts, preds in map(_predictions, reports.values())]
        for font in per_font[0]:
            print(f"  {font:<34} " + " ".join(f"{b[font]['accuracy']:5.1f}%" for b in per_font))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "crop_geometry.json"), "w", encoding="utf-8") as f:
        json.dump({k: {x: r[x] for x in ("samples", "accuracy", "norm_ed", "cer")} for k, r in reports.items()}, f,
                  indent=1)
    return 0


def _predictions(report: dict) -> tuple[list[str], list[str]]:
    """(labels, predictions) of an evaluation, in the split's order, from its predictions.tsv."""
    with open(report["predictions"], encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in list(f)[1:]]
    return [r[1] for r in rows], [r[2] for r in rows]


if __name__ == "__main__":
    sys.exit(main())
