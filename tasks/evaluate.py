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
from models.easyocr_venv import SCRIPTS, bundle_name, easyocr_python, run_in_easyocr
from tasks.contact_sheet import _label_font
from tasks.common import finished, output_cache
from tasks.lmdb_pack import MARKER, PackSettings, pack_lmdb_fn, read_gt

# The scripts run in EasyOCR's venv are part of what an evaluation is.
CODE_VERSION = hashing.code_version(__file__, *SCRIPTS)


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
    names = {f["sha256"]: f["name"]
             for f in summary.get("fonts", []) + summary.get("test_fonts", []) + summary.get("regression_fonts", [])}
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


BATCH_SIZE = 8  # recognize(batch_size > 1), as on a GPU, is checked against box-by-box reading (EasyOCR #1038)


def easyocr_predictions(bundle_url: str, data, scratch: str, batch_words: int = 0) -> dict[str, dict]:
    """Read every sample through the real easyocr package (its own venv) with the exported bundle: "float"
    (quantize=False), "int8" (quantize=True, EasyOCR's CPU default) and, for the first batch_words samples,
    "batch": BATCH_SIZE boxes a batch through recognize's batched branch."""
    bundle = storage.local_copy(bundle_url, "bundles")
    name = bundle_name(bundle)
    paths, gts = [], []
    for i in range(len(data)):
        path = os.path.join(scratch, f"{i}.png")
        data.raw_image(i).save(path)
        paths.append(path)
        gts.append(data.labels[i])
    runs = {"float": (paths, False, 0), "int8": (paths, True, 0)}
    if batch_words:
        runs["batch"] = (paths[:batch_words], False, BATCH_SIZE)
    out = {}
    for kind, (some, quantize, batch) in runs.items():
        read = run_in_easyocr("easyocr_read.py", bundle, name, some, quantize, batch)
        preds, confs, truth = [t for t, _ in read], [c for _, c in read], gts[:len(some)]
        out[kind] = {"preds": preds, "gts": truth, "confidences": confs, "accuracy": metrics.word_accuracy(preds, truth),
                     "norm_ed": metrics.norm_ed(preds, truth), "cer": metrics.cer(preds, truth)}
    return out


def agreement(preds: list[str], others: list[str]) -> float:
    """Percent of readings equal to the other reading of the same image (others may be longer)."""
    return 100.0 * sum(a == b for a, b in zip(preds, others)) / max(len(preds), 1)


PAGE_WORDS = 200  # words of a split composed into pages for readtext: the detector costs seconds a page on CPU


def evaluate_checkpoint(model_url: str, data_url: str, out_url: str, settings, batch_size: int = 192,
                        worst: int = 24, key: str | None = None, engine: str = "hwocr",
                        page_words: int = PAGE_WORDS) -> dict:
    """Score a checkpoint (engine hwocr) or an exported bundle read by the real easyocr (engine easyocr: float,
    int8 and, from the first page_words words: recognize with batch_size 8 and, composed into pages, readtext with
    the bundle's detector)."""
    import torch

    from models.charset import load_charset
    from models.codec import CTCCodec
    from models.data import LmdbDataset
    from models.pretrained import load_state_dict, network_for
    from models.trainer import evaluate

    charset = load_charset(settings.charset)
    codec = CTCCodec(charset)
    if engine == "hwocr":
        model = network_for(settings.pretrained).build(codec.num_class)
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
                           settings.preprocess, settings.max_width)
        if engine == "easyocr":
            readings = easyocr_predictions(model_url, data, scratch, page_words)
            result, int8 = readings["float"], readings["int8"]
            pages = None
            if page_words:
                from models.pages import pages_evaluation

                n = min(page_words, len(data))
                read = pages_evaluation(storage.local_copy(model_url, "bundles"),
                                        [data.raw_image(i) for i in range(n)], list(data.labels[:n]),
                                        os.path.join(scratch, "pages"))
                pages = {k: read[k] for k in ("words", "word_accuracy", "detection_recall", "cer")}
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
    if engine == "easyocr":
        report["easyocr"] = {"float": _figures(result), "int8": _figures(int8),
                             "int8_agreement": agreement(int8["preds"], preds), "pages": pages,
                             "batch": {"samples": len(readings["batch"]["preds"]), "batch_size": BATCH_SIZE,
                                       "agreement": agreement(readings["batch"]["preds"], preds),
                                       **_figures(readings["batch"])} if page_words else None}
    storage.write_json(storage.join(out_url, "evaluation.json"), report)
    return report


def _figures(result: dict) -> dict:
    return {k: result[k] for k in ("accuracy", "norm_ed", "cer")}


def evaluate_split_fn(checkpoint: str, data_url: str, out_url: str, settings, key: str, tracking,
                      run_id: str | None, split: str, prefix: str = "") -> dict:
    """Score a split once per (checkpoint, data) and add its figures to the fine-tune's MLflow run, named
    <prefix><split>_<metric> (prefix "start_" for the pretrained start)."""
    existing = finished(storage.join(out_url, "evaluation.json"), key)
    if existing:
        return {**existing, "reused": True}
    report = evaluate_checkpoint(checkpoint, data_url, out_url, settings, key=key)
    if run_id:
        from tasks.track import connect

        client = connect(tracking)
        for name in ("accuracy", "norm_ed", "cer"):
            client.log_metric(run_id, f"{prefix}{split}_{name}", float(report[name]))
        for font, row in (report["by_font"] or {}).items():
            client.log_metric(run_id, f"{prefix}{split}_accuracy_font_{_metric_name(font)}", float(row["accuracy"]))
        for name in ("predictions.tsv", "evaluation.json", "worst_failures.png"):
            path = storage.join(out_url, name)
            if storage.is_local(path) and storage.exists(path):
                client.log_artifact(run_id, storage.local_path(path), f"evaluation/{prefix}{split}")
    return {**report, "reused": False}


def _correct(predictions_url: str) -> dict[str, bool]:
    rows = storage.read_text(predictions_url).split("\n")[1:]
    return {f[0]: f[1] == f[2] for f in (r.split("\t") for r in rows if r)}


def retention(start_predictions: str, tuned_predictions: str) -> dict:
    """Forgetting, image by image: of the images the start read, how many the fine-tuned model still reads."""
    start, tuned = _correct(start_predictions), _correct(tuned_predictions)
    read = [k for k, ok in start.items() if ok]
    kept = sum(tuned.get(k, False) for k in read)
    return {"start_correct": len(read), "still_correct": kept, "forgotten": len(read) - kept,
            "retained": 100.0 * kept / len(read) if read else None}


def log_retention(tracking, run_id: str | None, figures: dict) -> None:
    if run_id and figures["retained"] is not None:
        from tasks.track import connect

        client = connect(tracking)
        if not client.get_metric_history(run_id, "regression_retained"):  # a cached re-run logs nothing again
            client.log_metric(run_id, "regression_retained", figures["retained"])


def _metric_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


MISMATCH_POINTS = 1.0  # EasyOCR's float reading may differ from hwocr's own figure by this much before a warning


def easyocr_check_fn(bundle_url: str, data_url: str, out_url: str, settings, key: str, tracking,
                     run_id: str | None, split: str, hwocr_accuracy: float) -> dict:
    """Read a split with the exported bundle in the real easyocr, float and int8, beside hwocr's own figure.

    The summary says whether EasyOCR's float accuracy is within MISMATCH_POINTS of hwocr's; the MLflow run gets
    the figures and the tags hwocr.easyocr_gap and hwocr.easyocr_mismatch."""
    marker = storage.join(out_url, "check.json")
    existing = finished(marker, key)
    if existing:
        return {**existing, "reused": True}
    report = evaluate_checkpoint(bundle_url, data_url, out_url, settings, key=key, engine="easyocr")
    e = report["easyocr"]
    gap = e["float"]["accuracy"] - hwocr_accuracy
    summary = {"key": key, "split": split, "samples": report["samples"], "hwocr_accuracy": hwocr_accuracy,
               "float": e["float"], "int8": e["int8"], "int8_agreement": e["int8_agreement"], "pages": e["pages"],
               "batch": e["batch"], "gap": gap,
               "mismatch": abs(gap) > MISMATCH_POINTS, "predictions": report["predictions"]}
    if run_id:
        from tasks.track import connect

        client = connect(tracking)
        for kind in ("float", "int8"):
            for name in ("accuracy", "norm_ed", "cer"):
                client.log_metric(run_id, f"{split}_easyocr_{kind}_{name}", float(e[kind][name]))
        for name in ("word_accuracy", "detection_recall", "cer") if e["pages"] else ():
            client.log_metric(run_id, f"{split}_easyocr_pages_{name}", float(e["pages"][name]))
        for name in ("accuracy", "agreement") if e["batch"] else ():
            client.log_metric(run_id, f"{split}_easyocr_batch_{name}", float(e["batch"][name]))
        client.set_tag(run_id, "hwocr.easyocr_gap", f"{gap:+.2f}")
        client.set_tag(run_id, "hwocr.easyocr_mismatch", str(summary["mismatch"]).lower())
        for name in ("predictions.tsv", "evaluation.json"):
            path = storage.join(out_url, name)
            if storage.is_local(path):
                client.log_artifact(run_id, storage.local_path(path), f"evaluation/{split}/easyocr")
    storage.write_json(marker, summary)
    return {**summary, "reused": False}


def easyocr_available() -> str | None:
    """None when the EasyOCR venv is there, else why not (the pipeline then skips its EasyOCR check)."""
    try:
        easyocr_python()
    except HwocrError as e:
        return str(e)
    return None


easyocr_check = task(easyocr_check_fn, name="easyocr_check", task_run_name="easyocr {split}",
                     cache_policy=output_cache(lambda p: (p["key"], storage.join(p["out_url"], "check.json"))),
                     persist_result=True)


def _marker(params: dict) -> tuple[str, str]:
    return params["key"], storage.join(params["out_url"], "evaluation.json")


evaluate_split = task(evaluate_split_fn, name="evaluate", task_run_name="evaluate {prefix}{split}",
                      cache_policy=output_cache(_marker), persist_result=True)
