"""Evaluation: a checkpoint or a bundle on an LMDB (or a folder with gt.txt), as hwocr reads it or as the real
EasyOCR does: scores overall, per font and per label length, predictions as TSV, an image grid of the worst failures,
and forgetting between two models' predictions. Plain Python: the pipeline's stages (tasks/evaluate.py) call it."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile

from PIL import Image, ImageDraw

from hwocr import storage
from hwocr.errors import HwocrError
from models import calibration, jamo, metrics
from models.easyocr_venv import bundle_name, run_in_easyocr
from models.lmdb_format import MARKER, PackSettings, lmdb_digest, pack, read_gt
from models.metrics import Scores
from synth.fonts import caption_font


def resolve_lmdb(data_url: str, scratch: str, allow_outside: bool = False) -> tuple[str, list[str]]:
    """A local LMDB path for data_url and the name of every sample (LMDB key, or image path from gt.txt)."""
    if storage.exists(storage.join(data_url, "data.mdb")):
        if storage.is_local(data_url):
            return storage.local_path(data_url), []
        return storage.local_copy(data_url, "lmdb", lmdb_digest(data_url)), []
    gt = storage.join(data_url, "gt.txt")
    if not storage.exists(gt):
        raise HwocrError(f"{data_url}: neither an LMDB (data.mdb) nor a folder with gt.txt")
    out = os.path.join(scratch, "lmdb")
    pack(gt, data_url, out, PackSettings(), allow_outside)
    return out, [path for _, path, _ in read_gt(gt)]


def fonts_of(lmdb_url: str, n: int) -> list[str] | None:
    """Font name per sample, from the pack result of LMDBs hwocr built (None for other LMDBs)."""
    packed = storage.read_json(storage.join(lmdb_url, MARKER)) or {}
    sample_fonts = packed.get("sample_fonts") or []
    if len(sample_fonts) != n:
        return None
    names = [f["name"] for f in packed.get("fonts") or []]
    return [names[i] for i in sample_fonts]


def failure_grid(dataset, rows: list[tuple[int, str, str, float]], out_url: str) -> None:
    """Images of the worst failures with their ground truth (black) and prediction (red)."""
    font = caption_font(20, None)
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


def confusion_picture(dataset, analysis: dict, out_url: str, shown: int = 8) -> None:
    """confusions.png: a heat map of the jamo confused most (label's jamo by position, down; read as, across) and,
    beside it, an example image of each of the most frequent confusions, characters and jamo."""
    font, small = caption_font(20, None), caption_font(15, None)

    def shown_as(j: str) -> str:  # the caption fonts have no ∅
        return "-" if j == jamo.NONE else j

    pairs = [c for c in analysis["confusions"] if c["level"] == "jamo"][:12]
    rows = list(dict.fromkeys((c["position"], c["truth"]) for c in pairs))
    cols = list(dict.fromkeys(c["read"] for c in pairs))
    counts = {(c["position"], c["truth"], c["read"]): c["count"] for c in pairs}
    most = max(counts.values(), default=1)
    cell, head, label_w = 40, 60, 110
    map_w = max(label_w + cell * max(len(cols), 1) + 20, 330)
    examples = sorted(analysis["confusions"], key=lambda c: -c["count"])[:shown]
    ex_w, ex_h = 460, 56
    height = max(head + cell * max(len(rows), 1), head + ex_h * len(examples)) + 10
    sheet = Image.new("RGB", (map_w + ex_w, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 8), "jamo: the label's (down) read as (across)", fill=(0, 0, 0), font=small)
    for j, read in enumerate(cols):
        draw.text((label_w + j * cell + cell // 2, head - 8), shown_as(read), fill=(0, 0, 0), font=font, anchor="ms")
    for i, (position, truth) in enumerate(rows):
        y = head + i * cell
        draw.text((8, y + cell // 2), f"{position} {shown_as(truth)}", fill=(0, 0, 0), font=small, anchor="lm")
        for j, read in enumerate(cols):
            n = counts.get((position, truth, read), 0)
            shade = int(255 - 200 * n / most) if n else 250
            box = [label_w + j * cell, y, label_w + (j + 1) * cell - 2, y + cell - 2]
            draw.rectangle(box, fill=(255, shade, shade) if n else (245, 245, 245))
            if n:
                draw.text((box[0] + cell // 2, y + cell // 2), str(n), fill=(0, 0, 0), font=small, anchor="mm")
    draw.text((map_w, 8), "examples, most frequent first", fill=(0, 0, 0), font=small)
    for k, c in enumerate(examples):
        y = head + k * ex_h
        img = dataset.raw_image(c["example"]).convert("RGB")
        img.thumbnail((ex_w // 2 - 12, ex_h - 8))
        sheet.paste(img, (map_w, y))
        what = f"{c.get('position', '')} {shown_as(c['truth'])} -> {shown_as(c['read'])}  x{c['count']}".strip()
        draw.text((map_w + ex_w // 2, y + ex_h // 2), what, fill=(200, 0, 0), font=font, anchor="lm")
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    storage.write_bytes(out_url, buf.getvalue())


BATCH_SIZE = 8  # recognize(batch_size > 1), as on a GPU, is checked against box-by-box reading (EasyOCR #1038)


DECODERS = ("greedy", "beamsearch", "wordbeamsearch")  # recognize()'s decoder argument


def easyocr_predictions(bundle_url: str, data, scratch: str, page_words: int = 0,
                        real_pages: list[dict] | None = None, found_pages: str | None = None,
                        decoders: tuple[str, ...] = (), words: list[str] | None = None,
                        decoder_samples: int | None = None) -> dict[str, dict]:
    """Read every sample through the real easyocr package (its own venv, one process for all readings) with the
    exported bundle: "float" (quantize=False), "int8" (quantize=True, EasyOCR's CPU default) and, from the first
    page_words samples: "batch", BATCH_SIZE boxes a batch through recognize's batched branch, and "pages", the
    figures of readtext (float) on them composed into pages (models/pages.py), or on the pages already composed
    and detected in the folder found_pages (models.pages.find_boxes, of the same samples); with real_pages (a real
    source's pages and their word boxes), "pages" is readtext on those pages instead. decoders: the float reading
    again with each of these decoders ("decoders": {name: its reading and "seconds_per_image"}; greedy's is the float
    reading's), wordbeamsearch searching `words` (EasyOCR's own Korean dictionary when None), on the first
    decoder_samples samples (all when None)."""
    from models.pages import PageSet, labeled_pages, score_pages, write_pages

    bundle = storage.local_copy(bundle_url, "bundles")
    name = bundle_name(bundle)
    n = min(page_words, len(data))
    paths, gts, first = [], [], []  # first: the images the pages are composed of, decoded once
    for i in range(len(data)):
        path = os.path.join(scratch, f"{i}.png")
        image = data.raw_image(i)
        image.save(path)
        paths.append(path)
        gts.append(data.labels[i])
        if i < n and not found_pages:
            first.append(image)
    pages = None
    if found_pages:
        from models.pages import PAGES_FILE

        key = hashlib.sha256(storage.read_bytes(storage.join(found_pages, PAGES_FILE))).hexdigest()
        pages = PageSet.load(storage.local_copy(found_pages, "pages", key))
        if [w.label for p in pages.pages for w in p.words] != gts[:n]:
            raise HwocrError(f"{found_pages}: its pages' words are not the first {n} samples of this split")
    elif page_words:
        pages = PageSet(*write_pages(first, gts[:n], os.path.join(scratch, "pages")))
    if real_pages:
        page_paths = [storage.local_copy(p["page"], "pages") for p in real_pages]
        pages = PageSet(labeled_pages(real_pages, page_paths), page_paths)
    # The page jobs first: a readtext job reads the boxes of the detect job at index 0.
    page_jobs = pages.jobs(bundle) if pages else []
    jobs = {f"page{k}": job for k, job in enumerate(page_jobs)}
    jobs |= {"float": {"read": "recognize", "quantize": False, "paths": paths},
             "int8": {"read": "recognize", "quantize": True, "paths": paths}}
    if page_words:
        jobs["batch"] = {"read": "batched", "quantize": False, "batch": BATCH_SIZE, "paths": paths[:page_words]}
    # greedy is the float reading itself; the others read after it warmed the network up.
    decoded = paths[:decoder_samples]
    for decoder in (d for d in decoders if d != "greedy"):
        jobs[decoder] = {"read": "recognize", "quantize": False, "paths": decoded, "decoder": decoder,
                         **({"words": words} if decoder == "wordbeamsearch" and words is not None else {})}
    seconds: dict[int, float] = {}
    reads = dict(zip(jobs, run_in_easyocr(bundle, name, list(jobs.values()), seconds)))
    took = {kind: seconds.get(i) for i, kind in enumerate(jobs)}
    out = {}
    for kind in ("float", "int8", "batch"):
        if kind not in reads:
            continue
        read = reads[kind]
        preds, confs, truth = [t for t, _ in read], [c for _, c in read], gts[:len(read)]
        out[kind] = {"preds": preds, "gts": truth, "confidences": confs, "scores": Scores.of(preds, truth)}
    if decoders:
        out["decoders"] = {}
        for decoder in decoders:
            kind = "float" if decoder == "greedy" else decoder
            read = reads[kind][:len(decoded)]
            preds, confs = [t for t, _ in read], [c for _, c in read]
            out["decoders"][decoder] = {"preds": preds, "confidences": confs,
                                        "scores": Scores.of(preds, gts[:len(decoded)]),
                                        "seconds_per_image": took[kind] / len(reads[kind]) if took[kind] else None}
    if pages is not None:
        scores = score_pages(pages.pages, reads[f"page{len(page_jobs) - 1}"])
        out["pages"] = {k: scores[k] for k in ("words", "word_accuracy", "detection_recall", "cer")}
    return out


def decoder_words(url: str, charset: str) -> dict:
    """The word list wordbeamsearch searches: one word a line, NFC; words with a character the model cannot write
    are dropped and counted, the first named."""
    import unicodedata

    allowed = set(charset)
    words, dropped = [], []
    for line in storage.read_text(url).splitlines():
        word = unicodedata.normalize("NFC", line.strip())
        if word:
            (words if set(word) <= allowed else dropped).append(word)
    if not words:
        raise HwocrError(f"--words {url}: no word of it can be written with the model's characters")
    first = next((f"{w!r} ({next(c for c in w if c not in allowed)!r})" for w in dropped), None)
    return {"url": url, "words": words, "kept": len(words), "dropped": len(dropped), "first_dropped": first}


def agreement(preds: list[str], others: list[str]) -> float:
    """Percent of readings equal to the other reading of the same image (others may be longer)."""
    return 100.0 * sum(a == b for a, b in zip(preds, others)) / max(len(preds), 1)


PAGE_WORDS = 200  # words of a split composed into pages for readtext: the detector costs seconds a page on CPU


def evaluate_checkpoint(model_url: str, data_url: str, out_url: str, settings=None, given: set[str] = frozenset(),
                        batch_size: int = 192, worst: int = 24, engine: str = "hwocr",
                        page_words: int = PAGE_WORDS, real_pages: list[dict] | None = None,
                        allow_outside: bool = False, found_pages: str | None = None,
                        decoders: tuple[str, ...] = (), words: str | None = None,
                        decoder_samples: int | None = None) -> dict:
    """Score a checkpoint or a bundle (engine hwocr), or a bundle read by the real easyocr (engine easyocr: float,
    int8 and, from the first page_words words: recognize with batch_size 8 and, composed into pages, readtext with
    the bundle's detector, or the pages found_pages holds, composed and detected already). The model is read as its
    reading contract says; decoders: the float reading again with each (wordbeamsearch searching the word list at
    `words`, EasyOCR's own Korean dictionary when None), scored side by side; `settings` (TrainSettings) and `given`
    (the train.* keys the user set) are checked against it, and read a checkpoint that has none."""
    import torch

    from models.pretrained import describe, layout_mismatch, load_state_dict
    from models.reading import open_model
    from models.trainer import evaluate

    if engine not in ("hwocr", "easyocr"):
        raise HwocrError(f"unknown engine {engine!r} (hwocr or easyocr)")
    pth, reading = open_model(model_url, settings, given)
    bundle = os.path.dirname(pth) if os.path.isdir(storage.local_copy(model_url, "models")) else None
    if engine == "easyocr" and bundle is None:
        raise HwocrError(f"--model {model_url}: the easyocr engine reads an exported bundle (the folder `hwocr "
                         "export` writes), not a checkpoint")
    codec = reading.codec()
    if engine == "hwocr":
        model = reading.build()
        state = load_state_dict(pth)
        if bad := layout_mismatch(model.state_dict(), state):
            raise HwocrError(f"{model_url} does not fit {describe(reading.network)} with {codec.num_class} classes "
                             f"(its reading): {len(bad)} mismatching keys, first: {', '.join(bad[:3])}")
        model.load_state_dict(state)
    with tempfile.TemporaryDirectory(prefix="hwocr-eval-") as scratch:
        lmdb_path, names = resolve_lmdb(storage.normalize(data_url), scratch, allow_outside)
        data = reading.dataset(lmdb_path)
        if engine == "easyocr":
            kept = decoder_words(words, reading.charset) if words and "wordbeamsearch" in decoders else None
            readings = easyocr_predictions(bundle, data, scratch, page_words, real_pages, found_pages, decoders,
                                           kept and kept["words"], decoder_samples)
            result, int8 = readings["float"], readings["int8"]
        else:
            result = evaluate(model, data, codec, torch.device("cpu"), batch_size, None)
        keys = [f"image-{i:09d}" for i in data.indices] if not names else [names[i - 1] for i in data.indices]
        fonts = fonts_of(storage.normalize(data_url), len(data))
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
        analysis = jamo.analyze(preds, gts)
        for c in analysis["confusions"]:
            c["example_path"] = keys[c["example"]]
        picture = storage.join(out_url, "confusions.png")
        if analysis["confusions"]:
            confusion_picture(data, analysis, picture)
        cal = calibration.calibrate(confs, [p == g for p, g in zip(preds, gts)])
        reliability = storage.join(out_url, "calibration.png")
        if "skipped" not in cal:
            calibration.reliability_picture(cal, reliability)
    report = {
        "model": model_url, "data": data_url, "reading": reading.describe(),
        **result["scores"].model_dump(),
        "predictions": predictions, "worst_failures": grid if rows else None, "dropped": data.dropped,
        "by_length": metrics.breakdown(preds, gts, [len(g) for g in gts]),
        "by_font": metrics.breakdown(preds, gts, fonts) if fonts else None,
        **analysis, "confusions_picture": picture if analysis["confusions"] else None,
        "calibration": cal, "calibration_picture": None if "skipped" in cal else reliability,
    }
    if engine == "easyocr":
        report["easyocr"] = {"float": result["scores"].metrics(), "int8": int8["scores"].metrics(),
                             "int8_agreement": agreement(int8["preds"], preds), "pages": readings.get("pages"),
                             "batch": {"samples": len(readings["batch"]["preds"]), "batch_size": BATCH_SIZE,
                                       "agreement": agreement(readings["batch"]["preds"], preds),
                                       **readings["batch"]["scores"].metrics()} if "batch" in readings else None,
                             "decoders": {name: {"samples": d["scores"].samples, **d["scores"].metrics(),
                                                 "seconds_per_image": d["seconds_per_image"]}
                                          for name, d in readings.get("decoders", {}).items()} or None,
                             "decoder_words": kept and {k: v for k, v in kept.items() if k != "words"}}
    storage.write_json(storage.join(out_url, "evaluation.json"), report)
    return report


def find_split_pages(data_url: str, reading, page_words: int, url: str) -> tuple[int, int]:
    """The first page_words samples of a split (as `reading` keeps them) composed into pages and their boxes
    found by EasyOCR's detector, stored at url for easyocr_predictions' found_pages; (pages, words)."""
    from models.pages import find_boxes

    with tempfile.TemporaryDirectory(prefix="hwocr-pages-") as scratch:
        lmdb_path, _ = resolve_lmdb(storage.normalize(data_url), scratch)
        data = reading.dataset(lmdb_path)
        n = min(page_words, len(data))
        return find_boxes([data.raw_image(i) for i in range(n)], data.labels[:n], url), n


def correct(predictions_url: str) -> dict[str, bool]:
    rows = storage.read_text(predictions_url).split("\n")[1:]
    return {f[0]: f[1] == f[2] for f in (r.split("\t") for r in rows if r)}


def retention(start_predictions: str, tuned_predictions: str) -> dict:
    """Forgetting, image by image: of the images the start read, how many the fine-tuned model still reads."""
    start, tuned = correct(start_predictions), correct(tuned_predictions)
    read = [k for k, ok in start.items() if ok]
    kept = sum(tuned.get(k, False) for k in read)
    return {"start_correct": len(read), "still_correct": kept, "forgotten": len(read) - kept,
            "retained": 100.0 * kept / len(read) if read else None}


MISMATCH_POINTS = 1.0  # EasyOCR's float reading may differ from hwocr's own figure by this much before a warning


def split_metrics(scores, split: str, prefix: str = "") -> dict[str, float]:
    """An evaluation's figures as MLflow metrics: <prefix><split>_<metric>, and accuracy per font."""
    def safe(text: str) -> str:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)

    jamo = getattr(scores, "jamo", None) or {}
    return {**scores.metrics(f"{prefix}{split}_"),
            **{f"{prefix}{split}_accuracy_font_{safe(font)}": row.accuracy
               for font, row in (scores.by_font or {}).items()},
            **{f"{prefix}{split}_jamo_{position}_error_rate": jamo[position]["rate"]
               for position in ("initial", "medial", "final") if jamo.get(position, {}).get("rate") is not None},
            **calibration_metrics(getattr(scores, "calibration", None), f"{prefix}{split}")}


def calibration_metrics(cal: dict | None, name: str) -> dict[str, float]:
    if not cal or "skipped" in cal:
        return {}
    out = {f"{name}_ece": cal["ece"]}
    for target, t in cal["thresholds"].items():
        if t:
            out |= {f"{name}_threshold_{target}": t["confidence"], f"{name}_kept_at_{target}": t["kept"]}
    return out


def check_metrics(e: dict, split: str) -> dict[str, float]:
    """The EasyOCR check's figures (evaluate_checkpoint's "easyocr") as MLflow metrics."""
    from models.metrics import Scores

    out = {f"{split}_easyocr_{kind}_{name}": float(e[kind][name]) for kind in ("float", "int8")
           for name in Scores.names()}
    out |= {f"{split}_easyocr_{decoder}_{n}": float(d[n]) for decoder, d in (e.get("decoders") or {}).items()
            for n in ("accuracy", "cer", "seconds_per_image") if d.get(n) is not None}
    out |= {f"{split}_easyocr_pages_{n}": float(e["pages"][n])
            for n in (("word_accuracy", "detection_recall", "cer") if e["pages"] else ())}
    out |= {f"{split}_easyocr_batch_{n}": float(e["batch"][n])
            for n in (("accuracy", "agreement") if e["batch"] else ())}
    return out


def kept_by(reading) -> list:
    """What decides which samples of a split a model of this reading keeps (LmdbDataset's filter)."""
    return [reading.charset, reading.batch_max_length, reading.img_h, reading.img_w, reading.preprocess,
            reading.max_width]


def easyocr_available() -> str | None:
    """None when the EasyOCR venv is there, else why not (the pipeline then skips its EasyOCR check)."""
    from models.easyocr_venv import easyocr_python

    try:
        easyocr_python()
    except HwocrError as e:
        return str(e)
    return None
