"""Ablation of the handwriting-realism settings on the cpu-reference protocol (held-out font families).

Each row is one `hwocr run --config cpu-reference` with one change, trained for the same number of minutes (or
iterations) from scratch. The anchor is the baseline row: plain trdg renders of the handwriting faces only (every
render effect and glyph jitter off, no print faces, no augmentation), the seed's look on the preset's fonts and
recipe. Prints word accuracy on the row's own validation images, on the baseline's plain validation images
(training handwriting fonts; the goal's "validation drop" compares these) and on the test split (held-out
handwriting families, always plain), and each row's change against the anchor in points. `--table` prints the
table of an earlier run's ablation.json again.

    .venv/bin/python bench/ablation.py [--minutes 60 | --iterations N] [--rows baseline,elastic,all,augment,print]
                                       [--start N] [--out .bench-tmp/ablation] [--set render.count=20000 ...]

The preset's budget is 60 minutes a row; a shorter --minutes is printed in the table's title. --iterations trains
every row for exactly N iterations instead: the rows then do not depend on the machine's load. Rows: baseline,
glyph_jitter, one per render effect (stroke, ink, elastic, pad_crop, paper, blur_jpeg), all (every render effect
and glyph jitter), augment (every effect at training time instead, on the baseline's images), print (30% of the
images from print faces, plain renders: the preset as it is).

--start N fine-tunes every row instead, from one model trained N iterations on plain renders of the print faces
only (the `start` row, shown first): a stand-in for EasyOCR's korean_g2, which read print-like synthetic text
before users fine-tune it on handwriting. Short budgets from scratch leave every row on CTC's plateau; fine-tuned,
the rows differ in what the effects teach, not in how fast a model starts reading.

--set applies a setting to every row (train.pretrained=korean_g2 fine-tunes them from EasyOCR's model); the
settings that rows or the budget control (effects, glyph jitter, augmentation, print_ratio, num_iter, max_minutes,
and pretrained under --start) are refused there.

Rows are added to OUT/ablation.json: a run whose --rows leave out the baseline reuses the baseline recorded there
when its budget and --set match, and trains one otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from synth.effects import ORDER  # noqa: E402

EFFECT_ROWS = ["glyph_jitter", *ORDER]
ROWS = ["baseline", *EFFECT_ROWS, "all", "augment", "print"]
PRINT_RATIO = 0.3  # the print row's share of print-face images, as in the preset
START = "start"  # the --start model's row: print faces only, every effect off
# Settings the rows and the budget set: a --set of one would be overridden in some rows and not in others.
ROW_KEYS = ("render.effects", "render.glyph_jitter", "train.augment", "render.pool.print_ratio",
            "train.num_iter", "train.max_minutes")


def overrides(row: str) -> list[str]:
    """The --set arguments of a row: its effects on (half of the images each, default strength), every other off;
    print faces in the print row (a share) and the start row (all)."""
    on = set(EFFECT_ROWS) if row == "all" else {row} & set(EFFECT_ROWS)
    switches = [f"{'render.glyph_jitter' if name == 'glyph_jitter' else f'render.effects.{name}'}.enabled="
                f"{'true' if name in on else 'false'}" for name in EFFECT_ROWS]
    if row == "augment":
        switches += [f"train.augment.{name}.enabled=true" for name in ORDER]
    ratio = {"print": PRINT_RATIO, START: 1.0}.get(row, 0.0)
    switches.append(f"render.pool.print_ratio={ratio}")
    return switches


def check_common(sets: list[str], start: int | None = None) -> None:
    """Refuse a --set that is not KEY=VALUE or that names a setting the rows or --minutes/--iterations/--start
    control."""
    keys = ROW_KEYS + (("train.pretrained",) if start else ())
    for s in sets:
        key, eq, _ = s.partition("=")
        key = key.strip()
        if not eq or not key:
            raise SystemExit(f"--set {s!r}: expected KEY=VALUE")
        owner = next((k for k in keys if key == k or key.startswith(k + ".")), None)
        if owner is not None:
            raise SystemExit(f"--set {s!r}: {owner} is set by each row or by --minutes/--iterations/--start, "
                             "not by --set")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of iterations, got {text}")
    return value


def budget(minutes: float, iterations: int | None) -> list[str]:
    if iterations:
        return ["train.max_minutes=0", f"train.num_iter={iterations}"]
    return [f"train.max_minutes={minutes}"]


def hwocr(command: list[str], sets: list[str], what: str, env: dict | None = None) -> dict:
    """The JSON result of one `hwocr ... --config cpu-reference --json` with the given --set overrides."""
    args = [sys.executable, "-m", "flows.cli", *command, "--config", "cpu-reference", "--json"]
    for o in sets:
        args += ["--set", o]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_row(row: str, budget_sets: list[str], out: str, common: list[str]) -> dict:
    # augment trains on the baseline's images: it shares the baseline's folder, and so its cached dataset.
    folder = os.path.join(out, "baseline" if row == "augment" else row)
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI",
                                                                f"sqlite:///{os.path.abspath(out)}/mlflow.db")}
    train = hwocr(["run", "--out", folder], [*budget_sets, *common, *overrides(row)], f"row {row}", env)["train"]
    return {"row": row, "iterations": train["iterations"], "checkpoint": train["checkpoint"],
            **{split: {k: r[k] for k in ("accuracy", "norm_ed", "by_font")}
               for split, r in train["evaluation"].items()}}


def score(checkpoint: str, lmdb: str, out: str, common: list[str]) -> dict:
    """`hwocr evaluate` of a row's checkpoint on another LMDB, with the rows' settings (image size, charset)."""
    return hwocr(["evaluate", "--model", checkpoint, "--data", lmdb, "--out", out], common,
                 f"evaluating {checkpoint} on {lmdb}")


def reusable_anchor(record: str, budget: dict, common: list[str]) -> list[dict]:
    """The rows of an earlier ablation.json whose baseline was trained on this budget and these settings, else []."""
    if not os.path.exists(record):
        return []
    with open(record, encoding="utf-8") as f:
        earlier = json.load(f)
    anchor = next((r for r in earlier if r["row"] == "baseline"), None)
    if anchor is None or anchor.get("budget") != budget or anchor.get("common", []) != common:
        return []
    return earlier


def print_table(results: list[dict], length: dict, common: list[str]) -> None:
    anchor = next(r for r in results if r["row"] == "baseline")
    minutes, iterations, start = length["minutes"], length["iterations"], length.get("start")
    title = (f"{iterations} iterations a row (the preset's budget is 60 minutes)" if iterations else
             f"{minutes:g} minutes of training a row" + ("" if minutes == 60 else " (shorter than the preset's 60)"))
    if start:
        title += f", fine-tuned from `start` ({start} iterations on print faces only)"
    print(f"ablation on cpu-reference, {title}; anchor: baseline (plain handwriting faces)"
          + (f"; every row with {' '.join(common)}" if common else ""))
    print("| row | iterations | val, own images | val, baseline's images | val vs baseline | test (held-out) "
          "| test norm_ED | test vs baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(results, key=lambda r: r["row"] != START):
        plain = r.get("val_plain", r["val"])["accuracy"]
        print(f"| {r['row']} | {r['iterations']} | {r['val']['accuracy']:.1f}% | {plain:.1f}% | "
              f"{plain - anchor['val']['accuracy']:+.1f} points | {r['test']['accuracy']:.1f}% | "
              f"{r['test']['norm_ed']:.3f} | {r['test']['accuracy'] - anchor['test']['accuracy']:+.1f} points |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60, help="training minutes per row (the preset's budget: 60)")
    p.add_argument("--iterations", type=positive_int, help="train every row for exactly this many iterations instead")
    p.add_argument("--start", type=positive_int, metavar="N",
                   help="fine-tune every row from a model trained N iterations on print faces only")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from: {', '.join(ROWS)}")
    p.add_argument("--out", default=os.path.join(ROOT, ".bench-tmp", "ablation"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting for every row")
    p.add_argument("--table", action="store_true", help="print the table of OUT/ablation.json, run nothing")
    args = p.parse_args()
    record = os.path.join(args.out, "ablation.json")
    if args.table:
        with open(record, encoding="utf-8") as f:
            results = json.load(f)
        length = results[0].get("budget", {"minutes": args.minutes, "iterations": args.iterations})
        print_table(results, length, results[0].get("common", args.set))
        return
    check_common(args.set, args.start)
    if args.minutes <= 0:
        p.error(f"--minutes must be positive, got {args.minutes:g}")
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {ROWS}")
    length = {"minutes": args.minutes, "iterations": args.iterations} | ({"start": args.start} if args.start else {})
    results = [] if "baseline" in rows else reusable_anchor(record, length, args.set)
    if "baseline" not in rows and not results:
        rows.insert(0, "baseline")  # the anchor is measured on the same protocol, budget and settings
    elif results:
        print(f"... baseline: reused from {record}", file=sys.stderr, flush=True)
    os.makedirs(args.out, exist_ok=True)
    sets, baseline_val = list(args.set), os.path.join(args.out, "baseline", "lmdb", "val")

    def record_row(result: dict) -> None:
        nonlocal results
        results = [r for r in results if r["row"] != result["row"]] + [{**result, "budget": length, "common": args.set}]
        with open(record, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, ensure_ascii=False)

    def score_on_baseline_val(result: dict) -> dict:
        row = result["row"]
        return {**result, "val_plain": score(result["checkpoint"], baseline_val,
                                             os.path.join(args.out, row, "eval-baseline-val"), args.set)}

    start = None
    if args.start:
        print(f"... {START} ({args.start} iterations, print faces only)", file=sys.stderr, flush=True)
        start = run_row(START, budget(args.minutes, args.start), args.out, args.set)  # cached when trained before
        sets.append(f"train.pretrained={os.path.abspath(os.path.join(ROOT, start['checkpoint']))}")
    for row in rows:
        print(f"... {row}", file=sys.stderr, flush=True)
        result = run_row(row, budget(args.minutes, args.iterations), args.out, sets)
        record_row(result if row == "baseline" else score_on_baseline_val(result))
        if start is not None and row == "baseline":
            record_row(score_on_baseline_val(start))
    if start is not None and "baseline" not in rows:
        record_row(score_on_baseline_val(start))
    print_table(results, length, args.set)


if __name__ == "__main__":
    main()
