"""The yardstick: the cpu-reference recipe on a fixed budget of iterations and samples, so that two ideas rank the same
on any machine, scored three ways on families it never trains on.

    .venv/bin/python bench/yardstick.py [--iterations 2000] [--count 20000 | --full] [--out .bench-tmp/yardstick]
                                        [--name baseline] [--set KEY=VALUE ...]

Each call is one `hwocr run --config cpu-reference` with the budget in iterations (no minute limit) and the training
images cut to --count (--full: the preset's own 60 minutes on 100,000 images, the full protocol the yardstick must
rank ideas as); --set adds the lever being measured (as hwocr --set). It reports, beside the machine's CPU kind
and the precision the loop trained in:
- **test**: the held-out families as trdg draws them (the preset's test split), read by EasyOCR from the bundle;
- **photo**: the same families drawn by a second renderer (synth/scans.py: Pillow, a page made to look photographed,
  every word cut as EasyOCR cuts a detector's box), read by EasyOCR from the bundle (`recognize`);
- **pages**: those photographed pages read by EasyOCR's `readtext`, its detector finding the words first;
and validation and the print regression split (hwocr's own figures), which a lever must not lower.

The second renderer's pages are drawn once into OUT/photo (seeded) and shared by every row; they are a real source
of the run with `split: test`, so they are scored and never trained or validated on. Rows are added to
OUT/yardstick.json and the table of all rows is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # models/, when run as a script
# cpu-reference's held-out handwriting families (render.pool.held_out_groups): the photographed pages use them too.
HELD_OUT = "alee-eunjin,un-vada,hi-melody,black-and-white-picture"
PHOTO_PAGES = 40
PHOTO_SEED = 37


def cpu_kind() -> tuple[str, str]:
    """(the CPU's model, cores and the widest bf16 it offers: AMX, AVX512-BF16, else AVX2; the precision
    train.precision auto trains in here, as the trainer decides it)."""
    import torch

    from models.trainer import autocast_dtype

    flags, model = set(), platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    kind = "AMX" if "amx_tile" in flags else "AVX512-BF16" if "avx512_bf16" in flags else \
        "AVX2" if "avx2" in flags else "no AVX2"
    auto = autocast_dtype("auto", torch.device("cpu"))
    return f"{model}, {os.cpu_count()} cores, {kind}", {None: "fp32", torch.bfloat16: "bf16"}[auto]


def hwocr(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "flows.cli", *args, "--json"], capture_output=True, text=True,
                          cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"hwocr {' '.join(args[:3])} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def photo_pages(out: str) -> str:
    """The second renderer's pages of the held-out families, drawn once."""
    folder = os.path.join(out, "photo")
    if not os.path.exists(os.path.join(folder, "pages", "Label.txt")):
        hwocr(["scans", "--out", folder, "--families", HELD_OUT, "--pages", str(PHOTO_PAGES),
               "--seed", str(PHOTO_SEED)])
    return os.path.join(folder, "pages")


def row(result: dict, name: str, sets: list[str], budget: dict) -> dict:
    train, check = result["train"], result.get("easyocr") or {}
    photo = (result.get("real") or {}).get("photo") or {}
    easy = photo.get("easyocr") or {}
    ev = train["evaluation"]
    cpu, auto = cpu_kind()
    precision = next((v.split("=", 1)[1] for v in sets if v.startswith("train.precision=")), auto)
    return {"name": name, "sets": sets, "budget": budget, "cpu": cpu, "precision": precision.replace("auto", auto),
            "iterations": train["iterations"],
            "val": ev["val"]["accuracy"], "regression": ev.get("regression", {}).get("accuracy"),
            "test": ev["test"]["accuracy"], "test_easyocr": (check.get("float") or {}).get("accuracy"),
            "photo": (easy.get("float") or {}).get("accuracy"),
            "pages": (easy.get("pages") or {}).get("word_accuracy"),
            "pages_recall": (easy.get("pages") or {}).get("detection_recall")}


ANCHOR = "baseline"
FIGURES = ("val", "regression", "test_easyocr", "photo", "pages")


def recipe() -> str:
    """A digest of the preset as loaded: a row is compared only with a baseline of the same recipe (rows recorded
    before rows carried it have none, and compare among themselves)."""
    import hashlib

    from flows.config import load_config

    return hashlib.sha256(load_config("cpu-reference").model_dump_json().encode()).hexdigest()[:12]


def table(rows: list[dict]) -> str:
    """Every row's figures and, after the anchor (the baseline row of the same budget and recipe), each one's change
    in points against it."""
    def cell(r, k):
        v = r[k]
        if v is None:
            return "-"
        anchor = next((a for a in rows if a["name"].startswith(ANCHOR) and a["budget"] == r["budget"]
                       and a.get("recipe") == r.get("recipe")), None)
        if anchor is None or anchor is r or anchor[k] is None:
            return f"{v:.2f}%"
        return f"{v:.2f}% ({v - anchor[k]:+.2f})"

    lines = ["| row | iterations | val | print | test (EasyOCR) | photo (EasyOCR) | pages (readtext) | machine, "
             "precision |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['iterations']} | " + " | ".join(cell(r, k) for k in FIGURES)
                     + f" | {r['cpu']}, {r['precision']} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--count", type=int, default=20000, help="training images (render.count)")
    p.add_argument("--out", default=os.path.join(ROOT, ".bench-tmp", "yardstick"))
    p.add_argument("--name", default="baseline", help="the row's name in the table (a name starting with "
                   "'baseline' anchors the rows of its budget and recipe)")
    p.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    p.add_argument("--full", action="store_true", help="the preset's own budget instead (60 minutes of training on "
                   "100,000 images): the full protocol, to check that the yardstick ranks ideas as it does")
    p.add_argument("--table", action="store_true", help="print the table of the rows recorded, and stop")
    args = p.parse_args()
    record = os.path.join(args.out, "yardstick.json")

    def recorded() -> list[dict]:
        return json.load(open(record, encoding="utf-8")) if os.path.exists(record) else []

    if args.table:
        rows = recorded()
    else:
        os.makedirs(args.out, exist_ok=True)
        pages = photo_pages(args.out)
        if args.full:
            budget, sets = {"preset": "cpu-reference"}, []
        else:
            budget = {"iterations": args.iterations, "count": args.count}
            # The freeze is the preset's share of its budget: 1,200 of the iterations a 60-minute AMX run reaches.
            sets = [f"render.count={args.count}", f"train.num_iter={args.iterations}", "train.max_minutes=0",
                    f"train.freeze_iterations={max(1, args.iterations // 10)}",
                    f"train.val_interval={max(1, args.iterations // 4)}"]
        sets += [f"real.sources=[{{name: photo, url: {pages}, split: test}}]", "tracking.registered_model=''",
                 *args.sets]
        out = os.path.join(args.out, args.name)
        result = hwocr(["run", "--config", "cpu-reference", "--out", out,
                        *[a for s in sets for a in ("--set", s)]])
        # Read after the run: another row may have been recorded while this one trained.
        rows = [r for r in recorded() if r["name"] != args.name] + [
            {**row(result, args.name, args.sets, budget), "recipe": recipe()}]
        with open(record + ".tmp", "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1, ensure_ascii=False)
        os.replace(record + ".tmp", record)
    print(table(rows))


if __name__ == "__main__":
    main()
