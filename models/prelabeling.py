"""Pre-labelling: a folder of scans read by a model as EasyOCR reads them, written as a `pages` source (PPOCRLabel's
Label.txt) for a person to review.

A page goes through EasyOCR's CRAFT detector (Reader.detect, readtext's settings, DetectorSettings) with no margin:
the boxes are stored as tight as the detector finds them, and cut with readtext's margin (models/sources.py's
easyocr_crop) exactly as the `pages` source will cut them for training. Each crop is then read by the bundle
through recognize(), float, which is what readtext gives for that box. A crop image (an image of one word) is read
whole. Every word gets its box (page coordinates), the prediction, its confidence and `"status": "predicted"`.
The source images are copied, never modified.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from hwocr import storage
from hwocr.errors import HwocrError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = 100_000_000  # a page larger than this is refused: CRAFT on it would take minutes and gigabytes
CROP_HEIGHTS = 3  # auto: an image at most this many model input heights tall is a word crop, else a page
LABEL_FILE = "Label.txt"
SUMMARY_FILE = "prelabel.json"
LS_TASKS = "labelstudio-tasks.json"  # Label Studio's pre-annotations, to import into an OCR project
BINS = 10  # the confidence histogram's bins over [0, 1]


class DetectorSettings(BaseModel):
    """readtext's box settings, with EasyOCR 1.7.2's defaults (tests/test_prelabel.py checks them against
    readtext's signature). add_margin is not one: boxes are stored tight, and cut with readtext's 0.1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_size: int = Field(20, description="Boxes smaller than this (pixels, longer side) are dropped.")
    text_threshold: float = Field(0.7, description="Text confidence threshold.")
    low_text: float = Field(0.4, description="Text low-bound score.")
    link_threshold: float = Field(0.4, description="Link confidence threshold.")
    canvas_size: int = Field(2560, description="Largest image side the detector reads (larger: resized down).")
    mag_ratio: float = Field(1.0, description="Image magnification ratio.")
    slope_ths: float = Field(0.1, description="Largest slope of a box merged with its neighbours.")
    ycenter_ths: float = Field(0.5, description="Largest vertical shift of boxes merged into one.")
    height_ths: float = Field(0.5, description="Largest difference in box height of boxes merged into one.")
    width_ths: float = Field(0.5, description="Largest horizontal distance of boxes merged into one.")
    threshold: float = Field(0.2, description="DBNet's threshold (unused by CRAFT).")
    bbox_min_score: float = Field(0.2, description="DBNet's smallest box score (unused by CRAFT).")
    bbox_min_size: int = Field(3, description="DBNet's smallest box side (unused by CRAFT).")
    max_candidates: int = Field(0, description="DBNet's most boxes (unused by CRAFT).")


class PrelabelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["auto", "pages", "crops"] = Field(
        "auto", description=f"pages: find the words; crops: each image is one word; auto: an image at most "
        f"{CROP_HEIGHTS} model input heights tall is a crop")
    shard_size: PositiveInt = Field(25, description="Images a shard: the unit of caching and retries.")
    detector: DetectorSettings = Field(default_factory=DetectorSettings)


def list_images(url: str) -> list[str]:
    """The image files under url (a folder, local or remote), as sorted relative paths; an error when none."""
    fs, root = storage.fs_and_path(url)
    if not fs.isdir(root):
        raise HwocrError(f"--images {url}: not a folder")
    found = sorted(os.path.relpath(p, root) if storage.is_local(url) else p[len(root.rstrip("/")) + 1:]
                   for p in fs.find(root) if p.lower().endswith(IMAGE_EXTS))
    found = [p for p in found if not any(part.startswith(".") for part in p.split("/"))]
    if not found:
        raise HwocrError(f"--images {url}: no images ({', '.join(IMAGE_EXTS)}) in that folder")
    return found


def image_size(path: str, where: str) -> tuple[int, int]:
    """(width, height) from the file's header; an error naming the file when it is no image, or too large."""
    from PIL import Image

    too_large = f"over the {MAX_PIXELS // 1_000_000} megapixels a page may have: scan at a lower resolution"
    try:
        with warnings.catch_warnings():  # Pillow warns from 89 megapixels on; the limit here is ours
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                size = im.size
    except Image.DecompressionBombError:
        raise HwocrError(f"{where}: {too_large}") from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's kinds of "not an image"
        raise HwocrError(f"{where}: cannot be decoded as an image ({e})") from None
    if size[0] * size[1] > MAX_PIXELS:
        raise HwocrError(f"{where}: {size[0]} x {size[1]} pixels ({size[0] * size[1] / 1e6:.0f} megapixels), "
                         f"{too_large}")
    return size


def kind_of(size: tuple[int, int], kind: str, img_h: int) -> str:
    if kind != "auto":
        return kind
    return "crops" if size[1] <= CROP_HEIGHTS * img_h else "pages"


def _quad(box) -> list[list[int]]:
    """A detect() box as four corners, tl tr br bl: a level box is [x_min, x_max, y_min, y_max]."""
    if len(box) == 4 and not isinstance(box[0], list):
        x0, x1, y0, y1 = (int(v) for v in box)
        return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    return [[float(x), float(y)] for x, y in box]


def read_images(bundle: str, root: str, names: list[str], settings: PrelabelSettings, scratch: str) -> list[dict]:
    """Each image of root named in names, read: {"image", "kind", "size", "words": [{"transcription", "points",
    "confidence", "status", "difficult", "crop"}]}, each word's crop PNG written under scratch/crops/ (as
    crops/<image file name>-NNN.png, the name it has in "crop")."""
    import cv2

    from models.easyocr_venv import bundle_name, run_in_easyocr
    from models.pages import detections_cache, require_detector
    from models.reading import open_model
    from models.sources import easyocr_crop

    name = bundle_name(bundle)
    img_h = open_model(bundle)[1].img_h
    local = [storage.local_copy(storage.join(root, n), "scans") for n in names]
    sizes = [image_size(p, storage.join(root, n)) for p, n in zip(local, names)]
    kinds = [kind_of(s, settings.kind, img_h) for s in sizes]
    pages = [k for k, kind in enumerate(kinds) if kind == "pages"]
    boxes: dict[int, list] = {}
    if pages:
        require_detector(bundle)
        detect = {"read": "detect", "detector": bundle, "paths": [local[k] for k in pages],
                  "settings": {**settings.detector.model_dump(), "add_margin": 0.0}, "cache": detections_cache()}
        [found] = run_in_easyocr(bundle, name, [detect])
        boxes = {k: [_quad(b) for b in horizontal] + [_quad(b) for b in free]
                 for k, (horizontal, free) in zip(pages, found)}
    os.makedirs(os.path.join(scratch, "crops"), exist_ok=True)
    rows, crops = [], []
    for k, (path, rel) in enumerate(zip(local, names)):
        gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)  # as EasyOCR decodes a file
        if gray is None:
            raise HwocrError(f"{storage.join(root, rel)}: cannot be decoded as an image")
        h, w = gray.shape
        quads = boxes[k] if kinds[k] == "pages" else [[[0, 0], [w, 0], [w, h], [0, h]]]
        words = []
        for j, quad in enumerate(quads):
            crop = gray if kinds[k] == "crops" else easyocr_crop(gray, quad)
            if crop.size == 0:
                continue
            crop_name = f"crops/{rel.replace('/', '__')}-{j:03d}.png"  # a.jpg and a.png keep apart
            cv2.imwrite(os.path.join(scratch, crop_name), crop)
            crops.append(os.path.join(scratch, crop_name))
            words.append({"transcription": "", "points": quad, "difficult": False, "confidence": 0.0,
                          "status": "predicted", "crop": crop_name})
        rows.append({"image": rel, "kind": kinds[k], "size": [w, h], "words": words})
    if crops:
        [read] = run_in_easyocr(bundle, name, [{"read": "recognize", "quantize": False, "paths": crops}])
        it = iter(read)
        for row in rows:
            for word in row["words"]:
                word["transcription"], word["confidence"] = next(it)
    return rows


def summary(rows: list[dict]) -> dict:
    confs = [w["confidence"] for r in rows for w in r["words"]]
    hist = np.histogram(confs, bins=BINS, range=(0.0, 1.0))[0].tolist() if confs else [0] * BINS
    return {"images": len(rows), "pages": sum(r["kind"] == "pages" for r in rows),
            "crops": sum(r["kind"] == "crops" for r in rows), "words": len(confs),
            "mean_confidence": float(np.mean(confs)) if confs else None,
            "confidence_histogram": {f"{i / BINS:.1f}-{(i + 1) / BINS:.1f}": n for i, n in enumerate(hist)}}


def check_charset(images_url: str, charset: str, model: str) -> None:
    """Scans that come with their own Label.txt in another script than the model writes (an English model on Korean
    pages) are refused: most of its readings would be wrong before a person sees one."""
    from models.sources import SourceSettings, read_source

    if not storage.exists(storage.join(images_url, LABEL_FILE)):
        return
    labels = [e.label for e in read_source(SourceSettings(name="scans", url=images_url, format="pages")).entries]
    allowed = set(charset) | {" "}
    outside = [label for label in labels if not set(label) <= allowed]
    if labels and len(outside) * 2 > len(labels):
        c = next(c for c in outside[0] if c not in allowed)
        raise HwocrError(f"--model {model}: its {len(charset)} characters cannot write {len(outside)} of the "
                         f"{len(labels)} labels of {storage.join(images_url, LABEL_FILE)} ({outside[0]!r}: {c!r} "
                         f"U+{ord(c):04X} is not one of them); a model of the labels' language reads these scans")


def against_truth(images_url: str, rows: list[dict]) -> dict | None:
    """When the scans come with their own Label.txt (stand-in scans do), the words found and read against it, as
    the pipeline scores pages (models/pages.py: a word is found when a box covers half of it); else None."""
    from models.pages import labeled_pages, score_pages
    from models.sources import SourceSettings, read_source

    if not storage.exists(storage.join(images_url, LABEL_FILE)):
        return None
    src = read_source(SourceSettings(name="truth", url=images_url, format="pages"))
    truth: dict[str, dict] = {}
    for e in src.entries:
        page = truth.setdefault(e.path, {"boxes": [], "labels": []})
        page["boxes"].append(e.box)
        page["labels"].append(e.label)
    read = [row for row in rows if row["image"] in truth]
    if not read:
        return None
    local = [storage.local_copy(storage.join(images_url, row["image"]), "scans") for row in read]
    pages = labeled_pages([truth[row["image"]] for row in read], local)
    readings = [[[w["points"], w["transcription"], w["confidence"]] for w in row["words"]] for row in read]
    scores = score_pages(pages, readings)
    return {k: scores[k] for k in ("pages", "words", "detection_recall", "word_accuracy", "cer")}


def reviewed(out_url: str) -> int:
    """How many words of the Label.txt at out_url a person has reviewed or rejected (0 when there is none)."""
    url = storage.join(out_url, LABEL_FILE)
    if not storage.exists(url):
        return 0
    n = 0
    for line in storage.read_text(url).splitlines():
        if "\t" in line:
            try:
                n += sum(isinstance(w, dict) and w.get("status", "predicted") != "predicted"
                         for w in json.loads(line.split("\t", 1)[1]))
            except ValueError:
                n += 1  # edited by hand into something else: not ours to overwrite either
    return n


def labelstudio_tasks(rows: list[dict], folder: str) -> list[dict]:
    """The rows as Label Studio tasks of its OCR template, each word a pre-annotation (a prediction, with its
    confidence as the score): rectangles for level boxes, polygons for tilted ones. Images are named as Label
    Studio's local files under a document root that holds the review folder (/data/local-files/?d=<folder>/<image>).
    A person's accepted or corrected regions come back in Label Studio's JSON export, which is a `labelstudio`
    source as it is."""
    from synth.labelstudio import regions

    tasks = []
    for n, row in enumerate(rows, 1):
        level = [w for w in row["words"] if w["points"][0][1] == w["points"][1][1]]
        tilted = [w for w in row["words"] if w["points"][0][1] != w["points"][1][1]]
        result = []
        for polygon, words in ((False, level), (True, tilted)):
            found = [(f"w{n}-{row['words'].index(w)}", w["points"], w["transcription"]) for w in words]
            result += regions(found, tuple(row["size"]), polygon)
        scores = [w["confidence"] for w in row["words"]]
        tasks.append({"id": n, "data": {"ocr": f"/data/local-files/?d={folder}/{row['image']}"},
                      "predictions": [{"model_version": "hwocr-prelabel", "result": result,
                                       "score": float(np.mean(scores)) if scores else 0.0}]})
    return tasks


def check_out(out_url: str) -> None:
    """Refuse a review folder a person has worked in: prelabel would overwrite their labels."""
    storage.not_a_file(out_url)
    if n := reviewed(out_url):
        raise HwocrError(f"--out {out_url}: {n} of its words were reviewed; prelabel would overwrite them: write to "
                         "another folder")


def write_folder(out_url: str, images_url: str, rows: list[dict], charset: str, truth: dict | None = None) -> dict:
    """The review folder at out_url: the images copied, Label.txt (paths as PPOCRLabel writes them:
    <folder>/<image>), labelstudio-tasks.json (the same words as Label Studio pre-annotations) and prelabel.json
    (the summary, and the model's characters: what `hwocr review` checks labels against), each file written whole;
    returns the summary. The crops are there already (the shards write them). truth: against_truth's figures."""
    folder = storage.normalize(out_url).rstrip("/").rsplit("/", 1)[-1]
    for row in rows:
        dest = storage.join(out_url, row["image"])
        data = storage.read_bytes(storage.join(images_url, row["image"]))
        if not storage.exists(dest) or storage.read_bytes(dest) != data:
            storage.write_bytes(dest, data)
    lines = [f"{folder}/{row['image']}\t{json.dumps(row['words'], ensure_ascii=False)}\n" for row in rows]
    storage.write_text(storage.join(out_url, LABEL_FILE), "".join(lines))
    storage.write_text(storage.join(out_url, LS_TASKS), json.dumps(labelstudio_tasks(rows, folder), ensure_ascii=False))
    result = {**summary(rows), "label_file": storage.join(out_url, LABEL_FILE), "truth": truth}
    storage.write_json(storage.join(out_url, SUMMARY_FILE), {**result, "charset": charset})
    return result
