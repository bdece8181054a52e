"""evaluate: a checkpoint on an LMDB (or a folder with gt.txt): metrics overall, per font and per label length,
predictions as TSV, and an image grid of the worst failures."""

from __future__ import annotations

import io
import os
import posixpath
import tempfile

from PIL import Image, ImageDraw

from prefect import task

from hwocr import hashing, storage
from hwocr.errors import HwocrError
from models import metrics
from tasks.contact_sheet import _label_font
from tasks.common import finished, output_cache
from tasks.lmdb_pack import MARKER, PackSettings, pack_lmdb_fn, read_gt

CODE_VERSION = hashing.source_digest(__file__)[:16]


def _resolve_lmdb(data_url: str, scratch: str) -> tuple[str, list[str]]:
    """A local LMDB path for data_url and the name of every sample (LMDB key, or image path from gt.txt)."""
    if storage.exists(storage.join(data_url, "data.mdb")):
        if storage.is_local(data_url):
            return storage.local_path(data_url), []
        from tasks.train import lmdb_digest

        return storage.local_copy(data_url, "lmdb", lmdb_digest(data_url)), []
    gt = storage.join(data_url, "gt.txt")
    if not storage.exists(gt):
        raise HwocrError(f"{data_url}: neither an LMDB (data.mdb) nor a folder with gt.txt")
    out = os.path.join(scratch, "lmdb")
    pack_lmdb_fn(gt, data_url, out, PackSettings(), key="evaluate")
    return out, [path for _, path, _ in read_gt(gt)]


def _fonts_of(lmdb_url: str, n: int) -> list[str] | None:
    """Font name per sample for LMDBs hwocr built (through gt.txt -> shard manifest -> dataset.json)."""
    marker = storage.read_json(storage.join(lmdb_url, MARKER)) or {}
    gt = marker.get("gt")
    if not gt or not storage.exists(gt):
        return None
    root = posixpath.dirname(posixpath.dirname(gt))
    summary = storage.read_json(storage.join(root, "dataset.json")) or {}
    names = {f["sha256"]: f["name"] for f in summary.get("fonts", []) + summary.get("test_fonts", [])}
    if not names:
        return None
    shard_font: dict[str, str] = {}
    fonts = []
    for line in storage.read_text(gt).splitlines():
        shard = line.split("\t", 1)[0].rsplit("/", 2)[0]  # <shard>/images.tar/<member>
        if shard not in shard_font:
            manifest = storage.read_json(storage.join(root, shard, "manifest.json")) or {}
            shard_font[shard] = names.get(manifest.get("font_sha"), manifest.get("font_sha", "?")[:12])
        fonts.append(shard_font[shard])
    return fonts if len(fonts) == n else None


def failure_grid(dataset, rows: list[tuple[int, str, str, float]], out_url: str) -> None:
    """Images of the worst failures with their ground truth (black) and prediction (red)."""
    font = _label_font(20, None)
    cell_w, img_h = 420, 48
    sheet = Image.new("RGB", (cell_w * 2, max(1, -(-len(rows) // 2)) * (img_h + 30) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (i, gt, pred, conf) in enumerate(rows):
        img = dataset.raw_image(i).convert("RGB")
        img.thumbnail((cell_w - 16, img_h))
        x, y = (k % 2) * cell_w + 8, (k // 2) * (img_h + 30) + 4
        sheet.paste(img, (x, y))
        draw.text((x, y + img_h + 2), f"{gt}", fill=(0, 0, 0), font=font)
        draw.text((x + cell_w // 2, y + img_h + 2), f"{pred} ({conf:.2f})", fill=(200, 0, 0), font=font)
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    storage.write_bytes(out_url, buf.getvalue())


def easyocr_python() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    py = os.environ.get("HWOCR_EASYOCR_PYTHON", os.path.join(root, ".venv-easyocr", "bin", "python"))
    if not os.path.exists(py):
        raise HwocrError(f"the easyocr engine runs EasyOCR from {py}, which is missing: scripts/bootstrap.sh creates "
                         "it, or set HWOCR_EASYOCR_PYTHON to a Python that imports easyocr")
    return py


def bundle_name(bundle: str) -> str:
    names = [f[:-5] for f in os.listdir(bundle) if f.endswith(".yaml")] if os.path.isdir(bundle) else []
    if len(names) != 1 or not os.path.exists(os.path.join(bundle, names[0] + ".pth")):
        raise HwocrError(f"{bundle}: not an EasyOCR bundle (one NAME.yaml, NAME.py and NAME.pth; see hwocr export)")
    return names[0]


def easyocr_predictions(bundle_url: str, data, scratch: str) -> dict:
    """Read every sample through the real easyocr package (its own venv) with the exported bundle."""
    import json
    import subprocess

    if not storage.is_local(bundle_url):
        raise HwocrError(f"the easyocr engine reads a local bundle folder; {bundle_url} is remote")
    bundle = storage.local_path(bundle_url)
    name = bundle_name(bundle)
    paths, gts = [], []
    for i in range(len(data)):
        path = os.path.join(scratch, f"{i}.png")
        data.raw_image(i).save(path)
        paths.append(path)
        gts.append(data.labels[i])
    with open(os.path.join(scratch, "images.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(paths) + "\n")
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hwocr", "easyocr_read.py")
    proc = subprocess.run([easyocr_python(), script, bundle, name, os.path.join(scratch, "images.txt")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    if proc.returncode != 0 or len(lines) != len(paths):
        raise HwocrError(f"EasyOCR could not read with {bundle}: " + (proc.stderr.strip().splitlines() or ["?"])[-1])
    preds, confs = zip(*(json.loads(ln) for ln in lines)) if lines else ((), ())
    preds, confs = list(preds), list(confs)
    return {"preds": preds, "gts": gts, "confidences": confs, "accuracy": metrics.word_accuracy(preds, gts),
            "norm_ed": metrics.norm_ed(preds, gts), "cer": metrics.cer(preds, gts)}


def evaluate_checkpoint(model_url: str, data_url: str, out_url: str, settings, batch_size: int = 192,
                        worst: int = 24, key: str | None = None, engine: str = "hwocr") -> dict:
    import torch

    from models.charset import load_charset
    from models.codec import CTCCodec
    from models.crnn import Model
    from models.data import LmdbDataset
    from models.pretrained import load_state_dict
    from models.trainer import evaluate

    charset = load_charset(settings.charset)
    codec = CTCCodec(charset)
    if engine == "hwocr":
        model = Model(num_class=codec.num_class)
        state = load_state_dict(storage.local_copy(model_url, "checkpoints"))
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise HwocrError(f"{model_url} does not fit None-VGG-BiLSTM-CTC with {codec.num_class} classes: "
                             f"{str(e).splitlines()[0]}") from None
    elif engine != "easyocr":
        raise HwocrError(f"unknown engine {engine!r} (hwocr or easyocr)")
    with tempfile.TemporaryDirectory(prefix="hwocr-eval-") as scratch:
        lmdb_path, names = _resolve_lmdb(storage.normalize(data_url), scratch)
        data = LmdbDataset(lmdb_path, charset, settings.batch_max_length, settings.img_h, settings.img_w,
                           settings.preprocess)
        if engine == "easyocr":
            result = easyocr_predictions(model_url, data, scratch)
        else:
            result = evaluate(model, data, codec, torch.device("cpu"), batch_size, None)
        keys = [f"image-{i:09d}" for i in data.indices] if not names else [names[i - 1] for i in data.indices]
        fonts = _fonts_of(storage.normalize(data_url), len(data))
        preds, gts, confs = result["preds"], result["gts"], result["confidences"]
        tsv = "path\tlabel\tprediction\tconfidence\n" + "".join(
            f"{k}\t{g}\t{p}\t{c:.4f}\n" for k, g, p, c in zip(keys, gts, preds, confs))
        predictions = storage.join(out_url, "predictions.tsv")
        storage.write_text(predictions, tsv)
        failures = sorted((i for i in range(len(gts)) if preds[i] != gts[i]),
                          key=lambda i: (-metrics.edit_distance(preds[i], gts[i]) / max(len(gts[i]), 1), -confs[i]))
        rows = [(i, gts[i], preds[i], confs[i]) for i in failures[:worst]]
        grid = storage.join(out_url, "worst_failures.png")
        if rows:
            failure_grid(data, rows, grid)
    report = {
        "key": key, "model": model_url, "data": data_url,
        "samples": len(gts), "accuracy": result["accuracy"], "norm_ed": result["norm_ed"], "cer": result["cer"],
        "predictions": predictions, "worst_failures": grid if rows else None, "dropped": data.dropped,
        "by_length": metrics.breakdown(preds, gts, [len(g) for g in gts]),
        "by_font": metrics.breakdown(preds, gts, fonts) if fonts else None,
    }
    storage.write_json(storage.join(out_url, "evaluation.json"), report)
    return report


def evaluate_split_fn(checkpoint: str, data_url: str, out_url: str, settings, key: str, tracking,
                      run_id: str | None, split: str) -> dict:
    """Score a split once per (checkpoint, data) and add its figures to the fine-tune's MLflow run."""
    existing = finished(storage.join(out_url, "evaluation.json"), key)
    if existing:
        return {**existing, "reused": True}
    report = evaluate_checkpoint(checkpoint, data_url, out_url, settings, key=key)
    if run_id:
        from tasks.track import connect

        client = connect(tracking)
        for name in ("accuracy", "norm_ed", "cer"):
            client.log_metric(run_id, f"{split}_{name}", float(report[name]))
        for font, row in (report["by_font"] or {}).items():
            client.log_metric(run_id, f"{split}_accuracy_font_{_metric_name(font)}", float(row["accuracy"]))
        for name in ("predictions.tsv", "evaluation.json", "worst_failures.png"):
            path = storage.join(out_url, name)
            if storage.is_local(path) and storage.exists(path):
                client.log_artifact(run_id, storage.local_path(path), f"evaluation/{split}")
    return {**report, "reused": False}


def _metric_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _marker(params: dict) -> tuple[str, str]:
    return params["key"], storage.join(params["out_url"], "evaluation.json")


evaluate_split = task(evaluate_split_fn, name="evaluate", task_run_name="evaluate {split}",
                      cache_policy=output_cache(_marker), persist_result=True)
