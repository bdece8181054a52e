"""Real word images, in the formats their owners already have, as training, validation and test data.

A source is read into entries (an image, or a box on a page image, with its label and the group it splits with),
checked by gt.txt's rules (NFC, the character set, the length; the files it names must lie in its folder and
decode), split by page (or by image where there are no pages) with a seeded, stable hash, and packed into one
benchmark LMDB per split. Word boxes on pages are cut as EasyOCR cuts a detector's boxes before `readtext` reads
them (its margin, and a perspective warp for a tilted box), so a real crop looks like what the model will be fed.

Formats (`format: auto` tells them apart by the files in the source folder):
  gt           a folder with gt.txt: `path<TAB>label` a line, paths relative to the folder (`hwocr pack`'s input)
  paddle       a PaddleOCR recognition label file (`path<TAB>label`), paths relative to its folder; or a folder with
               exactly one such .txt file (rec_gt.txt, as PPOCRLabel exports crops)
  easyocr      EasyOCR's trainer folder: images and labels.csv (`filename,words`; a `writer` column, when there is
               one, keeps a writer's images on one side of the split)
  lmdb         the benchmark's LMDB (data.mdb: image-%09d, label-%09d, num-samples)
  labelstudio  a Label Studio JSON export of an OCR project (its OCR template: rectangles or polygons, each with a
               per-region transcription), with the page images in the same folder
  pages        page images with word boxes: PPOCRLabel's Label.txt (`folder/page.jpg<TAB>[{"transcription",
               "points", "difficult"}]`); hwocr prelabel's adds "status": a word "predicted" (not reviewed yet) or
               "rejected" is left out, counted, and not against real.max_dropped
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, model_validator

from hwocr import hashing, storage
from hwocr.errors import HwocrError

FORMATS = ("gt", "paddle", "easyocr", "lmdb", "labelstudio", "pages")
SPLITS = ("train", "val", "test")
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
ADD_MARGIN = 0.1  # readtext's add_margin: the margin EasyOCR adds around every detector box
SLOPE_THS = 0.1  # group_text_box's slope_ths: a steeper box is warped straight, not cut as a rectangle
DONT_CARE = "###"  # PaddleOCR's label of an unreadable box
# A prelabelled word (hwocr prelabel) trains once a person reviewed it: "status" "reviewed", or none (PPOCRLabel's).
REVIEW_DROPS = {"predicted": "unreviewed", "rejected": "rejected"}


class SourceSettings(BaseModel):
    """One real source: where it is, its format, and what part of training it plays."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$",
                      description="Short name: lowercase letters, digits, - and _ (folders and metric names use it).")
    url: str = Field(description="The source folder (or label file, for paddle and labelstudio): a path or a URL.")
    format: Literal["auto", "gt", "paddle", "easyocr", "lmdb", "labelstudio", "pages"] = Field(
        "auto", description="auto tells the formats apart by their files.")
    ratio: float = Field(0.0, ge=0, lt=1, description="Share of every training batch drawn from this source's "
                         "train split (the benchmark's batch_ratio); 0: not trained on, only scored.")
    split: Literal["auto", "train", "val", "test"] = Field(
        "auto", description="Where its samples go: all to one split, or auto: split by page (by image where there "
        "are no pages, by writer where the format names one), seeded and stable as the source grows.")
    allow_outside: bool = Field(False, description="Let the label file name images outside the source folder.")

    def location(self) -> str:
        """url with environment variables and ~ expanded (a preset can say `$HWOCR_SCANS`), normalized."""
        url = os.path.expandvars(self.url)
        if "$" in url:
            raise HwocrError(f"real source {self.name}: url {self.url!r} names an environment variable that is not "
                             "set; set it to the folder of your scans")
        return storage.normalize(url)


class RefineSettings(BaseModel):
    """A second training stage on the real train splits alone, from the best checkpoint of the first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iterations: NonNegativeInt = Field(0, description="Iterations of the real-only stage (0: none).")
    lr: PositiveFloat = Field(0.0002, description="Its learning rate (the optimizer and schedule are train's).")


class RealSettings(BaseModel):
    """The user's own handwriting: sources, how an auto split divides them, and what a source may drop."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[SourceSettings] = Field(default_factory=list)
    train_fraction: float = Field(0.8, gt=0, lt=1, description="auto split: the share of pages for training.")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="auto split: the share for validation; test gets the "
                                "rest.")
    seed: int = Field(0, description="Seed of the auto split (a page's side depends on it and its own name only).")
    max_dropped: float = Field(0.5, ge=0, le=1, description="The largest share of a source's labels that may be "
                               "dropped (outside the character set, too long, don't-care) before it is an error.")
    refine: RefineSettings = Field(default_factory=RefineSettings)

    @model_validator(mode="after")
    def _check(self) -> RealSettings:
        names = [s.name for s in self.sources]
        if dup := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"real.sources: the name {dup[0]!r} is used twice; each source needs its own")
        if self.train_fraction + self.val_fraction >= 1:
            raise ValueError(f"real.train_fraction {self.train_fraction} + val_fraction {self.val_fraction} must be "
                             "below 1, so that auto splits keep a test share")
        if (total := sum(s.ratio for s in self.sources)) >= 1:
            raise ValueError(f"real.sources' ratios add up to {total:g}: they are shares of each training batch and "
                             "must leave the synthetic data a share (below 1 in all)")
        if self.refine.iterations and not total:
            raise ValueError("real.refine trains on the real train splits alone, but no source has a ratio: give the "
                             "sources to refine on a ratio (their shares of each refining batch)")
        for s in self.sources:
            if s.ratio and s.split in ("val", "test"):
                raise ValueError(f"real source {s.name}: ratio {s.ratio:g} trains on it, but its split is {s.split} "
                                 "(held out): set ratio 0, or split train or auto")
        return self

    def source(self, name: str) -> SourceSettings:
        return next(s for s in self.sources if s.name == name)


@dataclass
class Entry:
    """One labeled word: an image file, a box on a page image, or the bytes of an LMDB sample."""

    where: str  # "labels.csv row 12": what a message names
    label: str
    group: str  # what splits together: the page, the writer, or the image itself
    path: str | None = None  # relative to the source folder (absolute when allowed outside)
    box: list[list[float]] | None = None  # the word's quadrilateral on the page at path
    data: bytes | None = None
    frame: tuple[float, float] | None = None  # the page size the box was drawn on, when it is not the file's
    drop: str | None = None  # why the label was left out, when it was


@dataclass
class Source:
    """A source read: its entries and where its files are."""

    name: str
    format: str
    root: str  # the folder the entries' paths are relative to
    label_file: str | None
    entries: list[Entry] = field(default_factory=list)


# Telling formats apart.

def detect(url: str, name: str = "") -> str:
    """The format of the source at url, from its files."""
    fs, path = storage.fs_and_path(url)
    if fs.isfile(path):
        if path.endswith(".json"):
            return "labelstudio"
        if os.path.basename(path) == "Label.txt":
            return "pages"
        if os.path.basename(path) == "labels.csv":
            return "easyocr"
        return "paddle"
    if not fs.isdir(path):
        raise HwocrError(f"real source {name or url}: {url} does not exist")
    names = set(os.path.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))
    for marker, fmt in (("data.mdb", "lmdb"), ("Label.txt", "pages"), ("labels.csv", "easyocr"), ("gt.txt", "gt")):
        if marker in names:
            return fmt
    jsons = sorted(n for n in names if n.endswith(".json"))
    if len(jsons) == 1:
        return "labelstudio"
    txts = sorted(n for n in names if n.endswith(".txt"))
    if len(txts) == 1:
        return "paddle"
    raise HwocrError(f"real source {name or url}: cannot tell the format of {url} (no data.mdb, Label.txt, "
                     f"labels.csv or gt.txt, and {len(jsons)} .json and {len(txts)} .txt files); set its format")


def _label_file(url: str, fmt: str) -> tuple[str, str]:
    """(the folder paths are relative to, the label file) of a source."""
    fs, path = storage.fs_and_path(url)
    if fs.isfile(path):
        return _parent(url), url
    if fmt == "lmdb":
        return url, storage.join(url, "data.mdb")
    fixed = {"gt": "gt.txt", "easyocr": "labels.csv", "pages": "Label.txt"}
    if fmt in fixed:
        return url, storage.join(url, fixed[fmt])
    ext = ".json" if fmt == "labelstudio" else ".txt"
    found = sorted(p for p in fs.ls(path, detail=False) if p.endswith(ext))
    if len(found) != 1:
        raise HwocrError(f"real source {url}: format {fmt} needs one {ext} file in the folder, found {len(found)}; "
                         "give the file itself as url")
    return url, storage.join(url, os.path.basename(found[0]))


def _parent(url: str) -> str:
    return url.rsplit("/", 1)[0] if "://" in url else os.path.dirname(url)


# Reading each format into entries.

def _text(url: str) -> str:
    try:
        return storage.decode_text(storage.read_bytes(url), f"label file {url}")
    except FileNotFoundError:
        raise HwocrError(f"label file {url} does not exist") from None


def _tab_rows(url: str, what: str) -> Iterator[tuple[str, str, str]]:
    """(where, path, label) of a `path<TAB>label` file; a line in another shape is an error naming it."""
    for n, line in enumerate(_text(url).split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if line.count("\t") != 1:
            hint = " (a comma-separated file? give format easyocr, with a labels.csv)" if "," in line else ""
            raise HwocrError(f"{url} line {n}: expected '{what}', found {line.count(chr(9))} tabs{hint}: "
                             f"{line[:80]!r}")
        path, label = line.split("\t")
        if not path:
            raise HwocrError(f"{url} line {n}: empty path")
        yield f"{url} line {n}", path, label


def _read_tab(src: Source, allow: bool) -> None:
    for where, path, label in _tab_rows(src.label_file, "path<TAB>label"):
        rel = storage.inside(src.root, path, where, allow)
        src.entries.append(Entry(where, label, group=rel, path=rel))


def _read_easyocr(src: Source, allow: bool) -> None:
    rows = list(csv.reader(io.StringIO(_text(src.label_file))))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "filename" not in header or "words" not in header:
        got = ", ".join(header) or "nothing"
        hint = " (a tab-separated file? give format paddle)" if rows and "\t" in ",".join(rows[0]) else ""
        raise HwocrError(f"{src.label_file} line 1: expected EasyOCR's header 'filename,words', found {got}{hint}")
    col = {name: header.index(name) for name in ("filename", "words", "writer") if name in header}
    for n, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        where = f"{src.label_file} line {n}"
        if len(row) != len(header):
            raise HwocrError(f"{where}: {len(row)} fields, the header has {len(header)} (quote a label holding a "
                             "comma)")
        rel = storage.inside(src.root, row[col["filename"]], where, allow)
        group = f"writer:{row[col['writer']]}" if "writer" in col and row[col["writer"]].strip() else rel
        src.entries.append(Entry(where, row[col["words"]], group=group, path=rel))


def _read_lmdb(src: Source, allow: bool) -> None:
    import lmdb

    from models.lmdb_format import READER_OPTIONS, check_lmdb_file

    path = storage.local_copy(src.root, "lmdb")
    check_lmdb_file(path)
    env = lmdb.open(path, **READER_OPTIONS)
    try:
        with env.begin() as txn:
            n = int(txn.get(b"num-samples") or b"0")
            for i in range(1, n + 1):
                image, label = txn.get(b"image-%09d" % i), txn.get(b"label-%09d" % i)
                where = f"{src.root} sample {i}"
                if image is None or label is None:
                    raise HwocrError(f"{where}: missing its image or label (num-samples says {n})")
                src.entries.append(Entry(where, label.decode("utf-8"), group=f"sample:{i}", data=bytes(image)))
    finally:
        env.close()


def _resolve_page(src: Source, rel: str, where: str, allow: bool) -> str:
    """A Label.txt path: PPOCRLabel writes `<folder>/<file>` with Label.txt inside <folder> (named as it was then: a
    folder renamed or copied since keeps the old name in its lines)."""
    clean = storage.inside(src.root, rel, where, allow)
    rest = clean.partition("/")[2]
    if rest and not storage.exists(storage.join(src.root, clean)) and storage.exists(storage.join(src.root, rest)):
        return rest
    return clean


def _quad(points, where: str) -> list[list[float]]:
    try:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise HwocrError(f"{where}: points {str(points)[:60]} are not a list of [x, y]") from None
    if len(pts) < 4 or not np.isfinite(pts).all():
        raise HwocrError(f"{where}: a box needs at least 4 points, got {len(pts)}")
    if len(pts) > 4:  # a polygon: the smallest rotated rectangle around it, as a detector box
        pts = cv2.boxPoints(cv2.minAreaRect(pts.astype(np.float32))).astype(np.float64)
    return _order(pts).tolist()


def _order(pts: np.ndarray) -> np.ndarray:
    """tl, tr, br, bl: the order EasyOCR's boxes come in."""
    s, d = pts.sum(axis=1), np.diff(pts, axis=1)[:, 0]
    return np.array([pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)], pts[np.argmax(d)]])


def page_items(where: str, text: str, what: str = "boxes") -> list:
    """The JSON list of a Label.txt line's boxes; an error naming the line."""
    try:
        items = json.loads(text)
    except ValueError as e:
        raise HwocrError(f"{where}: its {what} are not JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(items, list):
        raise HwocrError(f"{where}: expected a JSON list of {what}")
    return items


def _read_pages(src: Source, allow: bool) -> None:
    for where, path, boxes in _tab_rows(src.label_file, "page<TAB>[boxes as JSON]"):
        rel = _resolve_page(src, path, where, allow)
        for k, item in enumerate(page_items(where, boxes), 1):
            at = f"{where} box {k}"
            if not isinstance(item, dict) or "transcription" not in item or "points" not in item:
                raise HwocrError(f"{at}: expected {{\"transcription\", \"points\"}}, got {str(item)[:80]}")
            label = str(item["transcription"])
            drop = ("dont_care" if item.get("difficult") or label == DONT_CARE
                    else REVIEW_DROPS.get(item.get("status")))
            src.entries.append(Entry(at, label, group=rel, path=rel, box=_quad(item["points"], at), drop=drop))


LS_GEOMETRY = {"rectangle", "rectanglelabels", "polygon", "polygonlabels"}


def _ls_box(result: dict, where: str) -> tuple[list[list[float]], tuple[float, float]]:
    """A Label Studio region's quadrilateral in pixels of the image it was drawn on, and that image's size."""
    v = result.get("value") or {}
    try:
        frame = (float(result["original_width"]), float(result["original_height"]))
    except (KeyError, TypeError, ValueError):
        frame = None
    scale = (frame[0] / 100, frame[1] / 100) if frame else (1.0, 1.0)
    if "points" in v:
        return _quad([[x * scale[0], y * scale[1]] for x, y in v["points"]], where), frame or (100.0, 100.0)
    try:
        x, y, w, h = (float(v[k]) for k in ("x", "y", "width", "height"))
    except (KeyError, TypeError, ValueError):
        raise HwocrError(f"{where}: a region without x, y, width and height") from None
    t = math.radians(float(v.get("rotation") or 0))  # clockwise about the top-left corner, as Label Studio draws
    if t and not frame:
        raise HwocrError(f"{where}: a rotated box without original_width and original_height")
    x, y, w, h = x * scale[0], y * scale[1], w * scale[0], h * scale[1]
    corners = [(0, 0), (w, 0), (w, h), (0, h)]
    return [[x + dx * math.cos(t) - dy * math.sin(t), y + dx * math.sin(t) + dy * math.cos(t)]
            for dx, dy in corners], frame or (100.0, 100.0)


def _ls_image(task: dict, where: str) -> str:
    data = task.get("data") or {}
    values = [v for v in data.values() if isinstance(v, str)]
    image = data.get("ocr") or data.get("image") or next(
        (v for v in values if v.lower().split("?")[0].endswith(IMAGE_EXT) or "?d=" in v), None)
    if not image:
        raise HwocrError(f"{where}: no image in its data ({', '.join(data) or 'empty'})")
    return image


class _Names:
    """Finds an exported image in the source folder: Label Studio names uploads /data/upload/<project>/<8 hex>-<file>
    and local files /data/local-files/?d=<path>."""

    def __init__(self, root: str) -> None:
        fs, path = storage.fs_and_path(root)
        self.root = root
        self.by_name: dict[str, list[str]] = collections.defaultdict(list)
        for p in fs.find(path):
            rel = os.path.relpath(p, path) if storage.is_local(root) else p[len(path.rstrip("/")) + 1:]
            self.by_name[os.path.basename(p)].append(rel)

    def __call__(self, image: str, where: str) -> str:
        from urllib.parse import parse_qs, unquote, urlparse

        url = urlparse(image)
        path = unquote(parse_qs(url.query)["d"][0]) if "d" in parse_qs(url.query) else unquote(url.path)
        name = os.path.basename(path)
        for candidate in (name, re.sub(r"^[0-9a-f]{8}-", "", name)):
            found = self.by_name.get(candidate, [])
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise HwocrError(f"{where}: image {image!r} matches {len(found)} files in {self.root} "
                                 f"({', '.join(sorted(found)[:3])}); keep one")
        raise HwocrError(f"{where}: image {image!r} is not in {self.root} (put the exported project's images "
                         "beside the JSON)")


def _read_labelstudio(src: Source, allow: bool) -> None:
    try:
        tasks = json.loads(_text(src.label_file))
    except ValueError as e:
        raise HwocrError(f"{src.label_file}: not JSON ({e})") from None
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise HwocrError(f"{src.label_file}: expected Label Studio's JSON export, a list of tasks")
    names = _Names(src.root)
    texts = 0
    for i, task in enumerate(tasks, 1):
        where = f"{src.label_file} task {task.get('id', i)}"
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if not annotations:
            continue  # not labelled yet
        rel = names(_ls_image(task, where), where)
        regions: dict[str, dict] = collections.defaultdict(dict)
        for r in annotations[-1].get("result") or []:
            kind = r.get("type")
            rid = str(r.get("id"))
            if kind in LS_GEOMETRY:
                regions[rid]["geometry"] = r
            elif kind == "textarea":
                text = (r.get("value") or {}).get("text") or []
                regions[rid]["text"] = " ".join(str(t) for t in text).strip()
                regions[rid].setdefault("geometry", r if "x" in (r.get("value") or {}) else None)
        for rid, region in regions.items():
            at = f"{where} region {rid}"
            if "text" not in region:
                raise HwocrError(f"{at}: a box without a transcription: not an export of Label Studio's OCR "
                                 "template (a per-region TextArea named transcription)")
            if region.get("geometry") is None:
                raise HwocrError(f"{at}: a transcription without a box")
            texts += 1
            box, frame = _ls_box(region["geometry"], at)
            src.entries.append(Entry(at, region["text"], group=rel, path=rel, box=box, frame=frame))
    if tasks and not texts:
        raise HwocrError(f"{src.label_file}: no transcriptions: an export of another Label Studio template (the OCR "
                         "template draws rectangles or polygons with a per-region TextArea)")


READERS: dict[str, Callable[[Source, bool], None]] = {
    "gt": _read_tab, "paddle": _read_tab, "easyocr": _read_easyocr, "lmdb": _read_lmdb, "pages": _read_pages,
    "labelstudio": _read_labelstudio}


def read_source(s: SourceSettings) -> Source:
    """The source's entries, its files and rows checked for shape and place (not yet its images)."""
    url = s.location()
    fmt = detect(url, s.name) if s.format == "auto" else s.format
    root, label_file = _label_file(url, fmt)
    if fmt == "lmdb":
        label_file = None
    elif not storage.exists(label_file):
        raise HwocrError(f"real source {s.name}: {label_file} does not exist (format {fmt})")
    src = Source(s.name, fmt, storage.normalize(root), label_file)
    READERS[fmt](src, s.allow_outside)
    if not src.entries:
        raise HwocrError(f"real source {s.name}: {label_file or url} holds no labeled word")
    return src


# Labels, splits and digests.

def check_labels(src: Source, charset: str, batch_max_length: int, max_dropped: float) -> dict[str, int]:
    """NFC labels; those outside the character set, too long or empty are dropped and counted by reason. Too many
    drops is an error naming the first."""
    import unicodedata

    allowed = set(charset)
    for e in src.entries:
        if e.drop:
            continue
        e.label = unicodedata.normalize("NFC", e.label.strip())
        if not e.label:
            e.drop = "empty"
        elif len(e.label) > batch_max_length:
            e.drop = "too_long"
        elif not set(e.label) <= allowed:
            e.drop = "out_of_charset"
    dropped = collections.Counter(e.drop for e in src.entries if e.drop)
    if sum(dropped.values()) == len(src.entries) and set(dropped) <= {"unreviewed", "rejected"}:
        raise HwocrError(f"real source {src.name}: none of its {len(src.entries)} words is reviewed yet "
                         f"({dict(dropped)}): a prelabelled word trains once its status is reviewed")
    # A review's decisions are not faults of the data: they do not count against real.max_dropped.
    total = sum(n for why, n in dropped.items() if why not in REVIEW_DROPS.values())
    if total > max_dropped * len(src.entries) or sum(dropped.values()) == len(src.entries):
        first = next(e for e in src.entries if e.drop)
        outside = "".join(sorted({c for e in src.entries if e.drop == "out_of_charset" for c in e.label} - allowed))
        raise HwocrError(f"real source {src.name}: {total} of {len(src.entries)} labels dropped ({dict(dropped)}), "
                         f"more than real.max_dropped {max_dropped:g}; the first: {first.where}, {first.label!r} "
                         f"({first.drop})" + (f"; characters outside the set: {outside[:40]!r}" if outside else ""))
    return dict(dropped)


def split_of(group: str, seed: int, train: float, val: float) -> str:
    """A group's side of an auto split: a hash of the seed and the group alone, so a page keeps its side as pages
    are added and removed."""
    u = int(hashlib.sha256(f"{seed}\0{group}".encode()).hexdigest()[:15], 16) / 16 ** 15
    return "train" if u < train else ("val" if u < train + val else "test")


def assign(src: Source, s: SourceSettings, real: RealSettings) -> dict[str, list[Entry]]:
    out: dict[str, list[Entry]] = {split: [] for split in SPLITS}
    for e in src.entries:
        if not e.drop:
            side = s.split if s.split != "auto" else split_of(e.group, real.seed, real.train_fraction,
                                                              real.val_fraction)
            out[side].append(e)
    return out


def source_digest(s: SourceSettings) -> str:
    """What the source's content is, cheaply: its label file's bytes and the listing of its folder (sizes and
    the store's fingerprints), so one edited label or one replaced image is a new digest."""
    url = s.location()
    fs, path = storage.fs_and_path(url)
    if not fs.exists(path):
        raise HwocrError(f"real source {s.name}: {url} does not exist (it was there when the config was made?)")
    folder = path if fs.isdir(path) else _parent(path)
    listing = sorted((p, fs.ukey(p)) for p in fs.find(folder))
    label = hashing.sha256_url(url) if fs.isfile(path) else ""
    return hashing.digest({"settings": s.model_dump(mode="json", exclude={"name", "ratio"}), "files": listing,
                           "label": label})


# Cutting and packing.

def easyocr_crop(gray: np.ndarray, box: list[list[float]]) -> np.ndarray:
    """A word box cut from a grayscale page as EasyOCR cuts a detector box for readtext (group_text_box with
    add_margin 0.1, then get_image_list): a level box as its bounding rectangle plus the margin, a tilted one
    warped straight with its margin."""
    poly = np.asarray(box, dtype=np.float64).round().astype(np.int32).reshape(-1)  # detector boxes are integers
    slope_up = (poly[3] - poly[1]) / max(10, poly[2] - poly[0])
    slope_down = (poly[5] - poly[7]) / max(10, poly[4] - poly[6])
    if max(abs(slope_up), abs(slope_down)) < SLOPE_THS:
        x_min, x_max = poly[0::2].min(), poly[0::2].max()
        y_min, y_max = poly[1::2].min(), poly[1::2].max()
        m = int(ADD_MARGIN * min(x_max - x_min, y_max - y_min))
        h, w = gray.shape
        return gray[max(0, y_min - m):min(y_max + m, h), max(0, x_min - m):min(x_max + m, w)]
    height = np.linalg.norm([poly[6] - poly[0], poly[7] - poly[1]])
    width = np.linalg.norm([poly[2] - poly[0], poly[3] - poly[1]])
    m = int(1.44 * ADD_MARGIN * min(width, height))
    t13 = abs(np.arctan((poly[1] - poly[5]) / max(10, poly[0] - poly[4])))
    t24 = abs(np.arctan((poly[3] - poly[7]) / max(10, poly[2] - poly[6])))
    rect = np.array([[poly[0] - np.cos(t13) * m, poly[1] - np.sin(t13) * m],
                     [poly[2] + np.cos(t24) * m, poly[3] - np.sin(t24) * m],
                     [poly[4] + np.cos(t13) * m, poly[5] + np.sin(t13) * m],
                     [poly[6] - np.cos(t24) * m, poly[7] + np.sin(t24) * m]], dtype=np.float32)
    tl, tr, br, bl = rect
    out_w = max(int(np.linalg.norm(br - bl)), int(np.linalg.norm(tr - tl)))
    out_h = max(int(np.linalg.norm(tr - br)), int(np.linalg.norm(tl - bl)))
    dst = np.array([[0, 0], [out_w - 1, 0], [out_w - 1, out_h - 1], [0, out_h - 1]], dtype=np.float32)
    return cv2.warpPerspective(gray, cv2.getPerspectiveTransform(rect, dst), (out_w, out_h))


def _decode_gray(data: bytes, where: str) -> np.ndarray:
    """A page as EasyOCR reads one from a file (cv2.imread with IMREAD_GRAYSCALE)."""
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if gray is None or gray.size == 0:
        raise HwocrError(f"{where}: cannot be decoded as an image")
    return gray


def _png(gray: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", gray, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return buf.tobytes()


BOX_SLACK = 2.0  # pixels a box may stray past its page's edge (rounding in the labelling tool) before it is refused


def _cut_page(read, root: str, entries: list[Entry]) -> list[tuple[bytes, str]]:
    """Every box of one page, cut; the page decoded once."""
    first = entries[0]
    try:
        data = read(first.path)
    except FileNotFoundError:
        raise HwocrError(f"{first.where}: page {storage.join(root, first.path)} does not exist") from None
    gray = _decode_gray(data, f"{first.where}: page {storage.join(root, first.path)}")
    h, w = gray.shape
    out = []
    for e in entries:
        box = np.asarray(e.box, dtype=np.float64)
        if e.frame:  # drawn on the image at another size (Label Studio's percent, or a resized page)
            box = box * np.array([w / e.frame[0], h / e.frame[1]])
        if (box[:, 0] < -BOX_SLACK).any() or (box[:, 1] < -BOX_SLACK).any() or (box[:, 0] > w + BOX_SLACK).any() \
                or (box[:, 1] > h + BOX_SLACK).any():
            raise HwocrError(f"{e.where}: box {box.round().astype(int).tolist()} lies outside its page "
                             f"({w} x {h} px)")
        crop = easyocr_crop(gray, box.tolist())
        if crop.size == 0 or min(crop.shape) < 2:
            raise HwocrError(f"{e.where}: box {box.round().astype(int).tolist()} holds no pixels")
        out.append((_png(crop), e.label))
    return out


def _load_image(read, root: str, e: Entry) -> list[tuple[bytes, str]]:
    if e.data is not None:
        data = e.data
    else:
        try:
            data = read(e.path)
        except FileNotFoundError:
            raise HwocrError(f"{e.where}: image {storage.join(root, e.path)} does not exist") from None
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) is None:
        raise HwocrError(f"{e.where}: image {e.path or 'bytes'} cannot be decoded")
    return [(data, e.label)]


def samples(src: Source, entries: list[Entry], workers: int = 0) -> Iterator[tuple[bytes, str]]:
    """(encoded image, label) in the entries' order; pages are cut on threads (OpenCV releases the GIL), each
    decoded once."""
    units: list[list[Entry]] = []
    for e in entries:  # consecutive boxes of one page are one unit
        if e.box is not None and units and units[-1][0].box is not None and units[-1][0].path == e.path:
            units[-1].append(e)
        else:
            units.append([e])
    with storage.reader(src.root) as read, ThreadPoolExecutor(workers or os.cpu_count() or 1) as ex:
        def work(unit: list[Entry]):
            return _cut_page(read, src.root, unit) if unit[0].box is not None else _load_image(read, src.root,
                                                                                                unit[0])
        for out in ex.map(work, units):
            yield from out


def import_source(s: SourceSettings, real: RealSettings, charset: str, batch_max_length: int, out_url: str,
                  pack_settings) -> dict:
    """Read, check, split and pack one source under out_url/<split> (a split it has no sample for is not
    written); returns its report: samples and groups per split, drops by reason."""
    from models.lmdb_format import pack_samples

    src = read_source(s)
    dropped = check_labels(src, charset, batch_max_length, real.max_dropped)
    by_split = assign(src, s, real)
    if s.ratio and not by_split["train"]:
        raise HwocrError(f"real source {s.name}: ratio {s.ratio:g} trains on it, but its split leaves no sample for "
                         "training (too few pages for the auto split?)")
    splits = {}
    for split, entries in by_split.items():
        if not entries:
            continue
        entries.sort(key=lambda e: (e.group, e.path or "", e.where))  # a page's boxes together, in a stable order
        url = storage.join(out_url, split)
        packed = pack_samples(samples(src, entries), len(entries), url, pack_settings)
        splits[split] = {"lmdb": url, "samples": packed["samples"], "groups": len({e.group for e in entries})}
        if src.format in ("pages", "labelstudio"):
            splits[split]["pages"] = _page_list(src, entries)
    return {"name": s.name, "format": src.format, "url": s.location(), "samples": len(src.entries),
            "dropped": dropped, "splits": splits}


def _page_list(src: Source, entries: Iterable[Entry]) -> list[dict]:
    """The pages of a split with their boxes and labels: readtext reads them whole."""
    pages: dict[str, dict] = {}
    for e in entries:
        page = pages.setdefault(e.path, {"page": storage.join(src.root, e.path), "boxes": [], "labels": [],
                                         "frame": e.frame})
        page["boxes"].append(e.box)
        page["labels"].append(e.label)
    return list(pages.values())

