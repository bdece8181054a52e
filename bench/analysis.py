"""What the error analysis adds to an evaluation: `hwocr evaluate` of a checkpoint on a split (the anchor: reading,
scoring, the failure grid, predictions.tsv) against the analysis alone on the same predictions (models/jamo.py's
breakdown and confusions, models/calibration.py's table and thresholds, and their two pictures). Prints seconds and
the ratio, the best of --repeat runs each.

    .venv/bin/python bench/analysis.py --model RUN/best_accuracy.pth --data OUT/lmdb/val [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    from models import calibration, jamo
    from models.evaluation import confusion_picture, evaluate_checkpoint, resolve_lmdb
    from models.reading import open_model

    whole, alone = [], []
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.repeat):
            t0 = time.perf_counter()
            report = evaluate_checkpoint(args.model, args.data, os.path.join(d, f"eval{r}"))
            whole.append(time.perf_counter() - t0)
        with open(report["predictions"], encoding="utf-8") as f:
            rows = [line.split("\t") for line in f.read().splitlines()[1:]]
        gts, preds, confs = [r[1] for r in rows], [r[2] for r in rows], [float(r[3]) for r in rows]
        _, reading = open_model(args.model)
        data = reading.dataset(resolve_lmdb(args.data, d)[0])
        for r in range(args.repeat):
            t0 = time.perf_counter()
            analysis = jamo.analyze(preds, gts)
            if analysis["confusions"]:
                confusion_picture(data, analysis, os.path.join(d, f"c{r}.png"))
            cal = calibration.calibrate(confs, [p == g for p, g in zip(preds, gts)])
            if "skipped" not in cal:
                calibration.reliability_picture(cal, os.path.join(d, f"r{r}.png"))
            alone.append(time.perf_counter() - t0)
    w, a = min(whole), min(alone)
    print(f"{len(gts)} words; evaluation, analysis included (anchor): {w:.2f} s; the analysis alone: {a:.3f} s; "
          f"ratio {a / w:.3f}x ({100 * a / w:.1f}% of the evaluation)")


if __name__ == "__main__":
    main()
