"""Stand-in scans: pages of Korean words drawn in handwriting fonts and made to look photographed, with their labels
in the formats real users have (PPOCRLabel's Label.txt, EasyOCR's trainer crops, a Label Studio export).

No licensed set of real Korean handwriting can be installed, so tests and docs use these instead:

    make_scans("scans", families_fonts(["nanum-handwriting", "un-pilgi"]), words, pages=20)

One font draws each page (a font is a "writer"). The words are laid out in lines with a little wobble and tilt,
then the page is photographed: a perspective warp, paper texture, uneven light, a soft shadow, blur and JPEG.
Every word's quadrilateral follows the same rotation and warp, so it encloses the word's ink with a margin of
BOX_MARGIN pixels. Everything is drawn from generators seeded by (seed, page, purpose): the same arguments give the
same bytes, and the geometry does not depend on whether the photographic effects are on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import unicodedata
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hwocr import hashing, storage
from hwocr.errors import HwocrError
from synth import font_pool, labelstudio
from synth.fonts import inspect_font, load_font, refuse_reserved

BOX_MARGIN = 3  # pixels between a word's ink and its quadrilateral
INK_LEVEL = 48  # coverage (of 255) that counts as ink, as synth.effects.ink_extent's darkness threshold
CROP_MARGIN = 0.1  # EasyOCR's readtext add_margin: its crops carry this share of the box height around the box
MAX_TILT = 3.0  # degrees, per word
MAX_WARP = 0.04  # of the page size, per corner
REFERENCE_WIDTH = 1240  # the default page width, at which the cap height is drawn from CAP_HEIGHT
CAP_HEIGHT = (40.0, 90.0)
LS_UPLOAD = "/data/upload/1/"  # where Label Studio keeps a project's uploaded files
LS_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FORMATS = {"pages": "pages/Label.txt", "easyocr": "easyocr/labels.csv", "labelstudio": "labelstudio.json"}


@dataclass(frozen=True)
class Writer:
    """A font that draws pages: what it draws and how tall its Hangul is per pixel of font size."""

    path: str
    family: str
    sha256: str
    covered: frozenset[str]
    cap_ratio: float

    def draws(self, word: str) -> bool:
        return set(word) <= self.covered


@dataclass(frozen=True)
class Placed:
    """A word on a page: its text and its quadrilateral (tl, tr, br, bl) in integer page pixels."""

    text: str
    quad: list[list[int]]


def _rng(seed: int, *purpose: object) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, hashing.seed(*purpose)]))


# ----------------------------------------------------------------------------------------------------------
# fonts and words


def families_fonts(families: list[str], catalogue: str | None = None) -> list[str]:
    """The font files of the catalogue's family_groups `families` (excluded files left out), in catalogue order;
    HwocrError for an unknown or reserved group, or a file that is not there."""
    entries = [e for e in font_pool.load_catalogue(catalogue) if not e.exclude]
    groups = sorted({e.family_group for e in entries})
    files: list[str] = []
    for family in families:
        refuse_reserved(f"font family {family!r}", family)
        chosen = [e for e in entries if e.family_group == family]
        if not chosen:
            raise HwocrError(f"font family {family!r} is not a family_group of the font catalogue; known groups: "
                             f"{', '.join(groups)}")
        for e in chosen:
            path = e.location()
            if not os.path.isfile(path):
                how = "python -m synth.npm_fonts" if e.source == "npm" else f"apt-get install {e.package}"
                raise HwocrError(f"font file {path} of family {family!r} does not exist; install it ({how})")
            files.append(path)
    return files


def _clean_words(words: list[str]) -> list[str]:
    """NFC, stripped, blank lines dropped, each word once (first place kept)."""
    return list(dict.fromkeys(w for w in (unicodedata.normalize("NFC", x).strip() for x in words) if w))


def _ink_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), inclusive, of the pixels with ink; None for none."""
    ink = mask >= INK_LEVEL
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if not rows.size:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _draw(font: ImageFont.FreeTypeFont, text: str, pad: int) -> np.ndarray:
    """text's coverage (0-255) with pad pixels of blank around its glyph box."""
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill=255)
    return np.asarray(img)


def _cap_ratio(path: str, covered: frozenset[str]) -> float:
    """The median ink height of the common syllables the font draws, per pixel of font size."""
    font = load_font(path, 100)
    syllables = [ch for ch in font_pool.HANGUL_PROBE if ch in covered]
    heights = [box[3] - box[1] + 1 for ch in syllables if (box := _ink_box(_draw(font, ch, 2)))]
    return float(np.median(heights)) / 100


def _family(path: str) -> str:
    """The catalogue's family of the file when it lists it, else the family in the font's name table."""
    real = os.path.realpath(path)
    for e in font_pool.load_catalogue():
        if os.path.realpath(e.location()) == real:
            return e.family
    return load_font(path, 10).getname()[0] or os.path.basename(path)


def _writer(path: str, words: list[str]) -> Writer:
    """A font checked: there, not reserved by its name table either, drawing Hangul and at least one of the words."""
    if not os.path.isfile(path):
        raise HwocrError(f"font file {path} does not exist")
    family = _family(path)
    info = inspect_font(path, "".join(sorted(set("".join(words)) | set(font_pool.HANGUL_PROBE))))
    refuse_reserved(f"font {path} ({info['name']})", family, info["name"])
    covered = frozenset(info["covered"])
    if not covered & set(font_pool.HANGUL_PROBE):
        raise HwocrError(f"font {path} ({info['name']}) draws no Hangul (only missing-glyph boxes)")
    writer = Writer(path, family, font_pool.font_sha256(path), covered, _cap_ratio(path, covered))
    if not any(writer.draws(w) for w in words):
        raise HwocrError(f"font {path} ({info['name']}) draws none of the words: it lacks {info['missing'][:40]!r}")
    return writer


def _word_stream(words: list[str], seed: int) -> Iterator[str]:
    """The words in a seeded order, each once; then again in another order, as long as asked."""
    rng = _rng(seed, "words")
    while True:
        yield from (words[i] for i in rng.permutation(len(words)))


def _take(stream: Iterator[str], pending: deque[str], writer: Writer, n: int) -> list[str]:
    """The next n words the writer draws; the ones it cannot wait in `pending` for another writer's page."""
    chosen, skipped = [], []
    while len(chosen) < n:
        word = pending.popleft() if pending else next(stream)
        (chosen if writer.draws(word) else skipped).append(word)
    pending.extendleft(reversed(skipped))
    return chosen


# ----------------------------------------------------------------------------------------------------------
# one page's geometry


@dataclass(frozen=True)
class Patch:
    """A tilted word: its coverage and its quadrilateral in the patch's pixels."""

    cover: np.ndarray
    quad: np.ndarray


def _word_patch(font: ImageFont.FreeTypeFont, text: str, angle: float) -> Patch:
    cover = _draw(font, text, BOX_MARGIN + 4)
    x0, y0, x1, y1 = _ink_box(cover) or (0, 0, cover.shape[1] - 1, cover.shape[0] - 1)
    m = BOX_MARGIN
    quad = np.array([[x0 - m, y0 - m], [x1 + m, y0 - m], [x1 + m, y1 + m], [x0 - m, y1 + m]], dtype=np.float64)
    h, w = cover.shape
    rot = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    # Grow the canvas so that the turned word keeps its corners.
    c, s = abs(rot[0, 0]), abs(rot[0, 1])
    nw, nh = int(np.ceil(w * c + h * s)) + 2, int(np.ceil(w * s + h * c)) + 2
    rot[:, 2] += ((nw - 1) / 2 - (w - 1) / 2, (nh - 1) / 2 - (h - 1) / 2)
    turned = cv2.warpAffine(cover, rot, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0)
    return Patch(turned, quad @ rot[:, :2].T + rot[:, 2])


@dataclass(frozen=True)
class Style:
    """A page's handwriting: size, margins, spacing and each word's tilt, size and wobble (drawn before the words
    are, so that fitting a page by shrinking draws nothing more)."""

    cap: float
    left: float
    right: float
    top: float
    bottom: float
    line_gap: float
    indents: np.ndarray
    gaps: np.ndarray
    tilts: np.ndarray
    scales: np.ndarray
    wobbles: np.ndarray


def _style(rng: np.random.Generator, width: int, n: int) -> Style:
    return Style(
        cap=rng.uniform(*CAP_HEIGHT) * width / REFERENCE_WIDTH,
        left=rng.uniform(0.08, 0.13), right=rng.uniform(0.08, 0.12), top=rng.uniform(0.08, 0.13), bottom=0.08,
        line_gap=rng.uniform(0.6, 1.8),
        indents=rng.uniform(0, 0.5, n), gaps=rng.uniform(0.5, 1.0, n), tilts=rng.uniform(-MAX_TILT, MAX_TILT, n),
        scales=rng.uniform(0.93, 1.07, n), wobbles=rng.uniform(-0.1, 0.1, n))


def _layout(patches: list[Patch], style: Style, cap: float, size: tuple[int, int]) -> list[tuple[int, int]] | None:
    """Each patch's top-left corner, in lines from the top-left of the text area; None when they do not fit."""
    width, height = size
    left, right = round(style.left * width), width - round(style.right * width)
    top, bottom = round(style.top * height), height - round(style.bottom * height)
    rows: list[list[tuple[int, int]]] = [[]]  # per line: (patch, x)
    x = left
    for i, p in enumerate(patches):
        w = p.cover.shape[1]
        if rows[-1] and x + w > right:
            rows.append([])
            x = left + round(style.indents[i] * cap)
        if x + w > right:
            return None
        rows[-1].append((i, x))
        x += w + round(style.gaps[i] * cap)
    spots: list[tuple[int, int]] = [(0, 0)] * len(patches)
    y = top
    for row in rows:
        line_h = max(patches[i].cover.shape[0] for i, _ in row)
        for i, x in row:
            # Lines are line_gap * cap (>= 0.6 cap) apart and a word wobbles by 0.1 cap at most: no two overlap.
            spots[i] = (x, y + (line_h - patches[i].cover.shape[0]) // 2 + round(style.wobbles[i] * cap))
        y += line_h + round(style.line_gap * cap)
    if any(y + p.cover.shape[0] > bottom for p, (_, y) in zip(patches, spots)):
        return None
    return spots


def _fit(writer: Writer, words: list[str], style: Style,
         size: tuple[int, int]) -> tuple[list[Patch], list[tuple[int, int]]]:
    """The words' patches and spots, at the style's size or smaller (10% a step) until they fit the page."""
    cap = style.cap
    fonts: dict[int, ImageFont.FreeTypeFont] = {}
    while cap >= 6:
        patches = []
        for word, tilt, scale in zip(words, style.tilts, style.scales):
            px = max(4, round(cap * scale / writer.cap_ratio))
            if px not in fonts:
                fonts[px] = load_font(writer.path, px)
            patches.append(_word_patch(fonts[px], word, float(tilt)))
        spots = _layout(patches, style, cap, size)
        if spots is not None:
            return patches, spots
        cap *= 0.9
    raise HwocrError(f"{len(words)} words in {writer.path} do not fit a {size[0]}x{size[1]} page: use fewer "
                     "words_per_page or a larger page_size")


def _warp(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A perspective that moves each page corner by up to MAX_WARP of the page size, in or out."""
    w, h = size
    src = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    dst = src + rng.uniform(-MAX_WARP, MAX_WARP, size=(4, 2)).astype(np.float32) * np.float32([w, h])
    return cv2.getPerspectiveTransform(src, dst)


# ----------------------------------------------------------------------------------------------------------
# one page's appearance


def _smooth_field(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """Values in [0, 1] varying smoothly over the page, about `cells` swells across."""
    w, h = size
    coarse = rng.uniform(0, 1, size=(max(2, cells * h // w + 2), cells + 2)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def _paper(rng: np.random.Generator, size: tuple[int, int], photo: bool) -> np.ndarray:
    """The flat sheet, RGB float: off-white with grain and blotches when photographed, plain white when not."""
    w, h = size
    if not photo:
        return np.full((h, w, 3), 250, np.float32)
    tone = np.float32([rng.uniform(240, 250), rng.uniform(236, 247), rng.uniform(226, 240)])
    blotch = (_smooth_field(rng, size, 6) - 0.5) * np.float32(rng.uniform(6, 14))
    blotch += (_smooth_field(rng, size, 24) - 0.5) * np.float32(rng.uniform(2, 5))
    grain = rng.standard_normal((h, w), dtype=np.float32) * np.float32(rng.uniform(1.5, 3.0))
    return tone + (blotch + grain)[..., None]


def _ink(rng: np.random.Generator, cover: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """The words in dark grey to blue-black ink on the paper, with the pen's pressure varying along the page."""
    grey, blue = rng.uniform(30, 65), rng.uniform(0, 1)
    ink = np.float32([grey - 12 * blue, grey - 6 * blue, grey + 28 * blue])
    pressure = 0.82 + 0.18 * _smooth_field(rng, (cover.shape[1], cover.shape[0]), 12)
    alpha = (cover * pressure * np.float32(rng.uniform(0.9, 0.97)))[..., None]
    return paper * (1 - alpha) + ink * alpha


def _light(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Brightness, per pixel and channel: a gradient and a vignette, then a soft shadow over part of the page."""
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs, ys = xs / np.float32(w), ys / np.float32(h)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.float32(np.cos(theta)) * xs + np.float32(np.sin(theta)) * ys
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    vignette = (xs - 0.5) ** 2 + (ys - 0.5) ** 2
    gain = 1 - np.float32(rng.uniform(0.05, 0.18)) * ramp - np.float32(rng.uniform(0, 0.25)) * vignette
    # The shadow of the phone or a hand: one side of a line, its edge blurred over a few percent of the page.
    phi = rng.uniform(0, 2 * np.pi)
    d = np.float32(np.cos(phi)) * xs * np.float32(w / h) + np.float32(np.sin(phi)) * ys
    cut = float(d.max()) - rng.uniform(0.15, 0.45) * float(d.max() - d.min())
    soft = np.float32(rng.uniform(0.03, 0.08))
    shade = np.float32(rng.uniform(0.12, 0.3)) / (1 + np.exp(-(d - np.float32(cut)) / soft))
    tint = np.float32([1.0, 0.96, 0.85])  # shade is lit by the sky: it loses more red than blue
    return gain[..., None] * (1 - shade[..., None] * tint)


def _photograph(rng: np.random.Generator, page: np.ndarray, warp: np.ndarray, photo: bool) -> np.ndarray:
    """The flat page as a camera sees it: warped onto a desk, lit unevenly, shadowed, blurred, with sensor noise."""
    h, w = page.shape[:2]
    desk = tuple(float(v) for v in rng.uniform(70, 120) * np.array([1.0, 0.9, 0.78])) if photo else (250.0,) * 3
    out = cv2.warpPerspective(page, warp, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=desk)
    if not photo:
        return out
    out *= _light(rng, (w, h))
    sigma = rng.uniform(0.5, 1.1) * w / REFERENCE_WIDTH
    out = cv2.GaussianBlur(out, (0, 0), sigmaX=max(sigma, 0.3))
    out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 2.5))
    return out


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _render_page(writer: Writer, words: list[str], size: tuple[int, int], seed: int, number: int, photo: bool,
                 jpeg_quality: tuple[int, int]) -> tuple[bytes, list[Placed]]:
    """One page's JPEG and its words' quadrilaterals in it."""
    w, h = size
    geo = _rng(seed, "geometry", number)
    style = _style(geo, w, len(words))
    warp = _warp(geo, size)
    patches, spots = _fit(writer, words, style, size)
    cover = np.zeros((h, w), np.float32)
    placed = []
    for word, patch, (x, y) in zip(words, patches, spots):
        ph, pw = patch.cover.shape
        np.maximum(cover[y:y + ph, x:x + pw], patch.cover.astype(np.float32) / 255, out=cover[y:y + ph, x:x + pw])
        quad = cv2.perspectiveTransform((patch.quad + (x, y)).astype(np.float64)[None], warp)[0]
        placed.append(Placed(word, np.rint(quad).astype(int).tolist()))
    look = _rng(seed, "appearance", number)
    page = _photograph(look, _ink(look, cover, _paper(look, size, photo)), warp, photo)
    return _jpeg(page, int(look.integers(jpeg_quality[0], jpeg_quality[1] + 1))), placed


# ----------------------------------------------------------------------------------------------------------
# the label formats


def _label_line(key: str, words: list[Placed]) -> str:
    """A line of PPOCRLabel's Label.txt."""
    boxes = [{"transcription": p.text, "points": p.quad, "difficult": False} for p in words]
    return f"{key}\t{json.dumps(boxes, ensure_ascii=False)}\n"


def _region_id(seed: int, page: int, index: int) -> str:
    """A 10-character id like the ones Label Studio gives regions, from the word's place in the set."""
    n, chars = hashing.seed("region", seed, page, index), []
    for _ in range(10):
        n, r = divmod(n, len(LS_ALPHABET))
        chars.append(LS_ALPHABET[r])
    return "".join(chars)


def _ls_task(number: int, image: str, words: list[Placed], size: tuple[int, int], seed: int) -> dict:
    """A task of Label Studio's JSON export for the OCR template: rectangles on odd pages, polygons on even ones."""
    found = [(_region_id(seed, number, i), p.quad, p.text) for i, p in enumerate(words)]
    result = labelstudio.regions(found, size, polygon=number % 2 == 0)
    return {"id": number, "data": {"ocr": LS_UPLOAD + image}, "annotations": [{"id": number, "result": result}]}


def _crop(page: Image.Image, quad: list[list[int]]) -> Image.Image:
    """The quad's bounding rectangle with CROP_MARGIN of its height around it, clipped to the page, in grey."""
    xs, ys = [p[0] for p in quad], [p[1] for p in quad]
    m = round(CROP_MARGIN * (max(ys) - min(ys)))
    box = (max(0, min(xs) - m), max(0, min(ys) - m), min(page.width, max(xs) + m + 1),
           min(page.height, max(ys) + m + 1))
    return page.crop(box).convert("L")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _readme(pages: int, words: int, writers: list[Writer], seed: int) -> str:
    families = ", ".join(dict.fromkeys(w.family for w in writers))
    return f"""# Stand-in scans (synthetic)

These {pages} pages are synthetic STAND-INS for scans of real handwriting, not handwriting: {words} Korean words drawn
in handwriting fonts ({families}; one font, one "writer", a page), laid out in lines with a little wobble and tilt,
then made to look photographed (a perspective warp, paper texture, uneven light, a soft shadow, blur and JPEG). They
were made by `synth/scans.py` (`make_scans`, seed {seed}); `manifest.json` lists the fonts with their sha256. A
model's score on them says how it reads these fonts, not how it reads people's writing.

Real scans go in the same formats, and hwocr reads them as a real source (`models/sources.py`): page images with
PPOCRLabel's `Label.txt` (format `pages`: give the folder, like `pages/` here), EasyOCR trainer crops with
`labels.csv` (`filename,words`; format `easyocr`: the folder, like `easyocr/`), or Label Studio's JSON export of
its OCR template with the page images beside it (format `labelstudio`: the JSON file, like `labelstudio.json`).
Point the source's `url` at your own folder or file instead of this one.
"""


# ----------------------------------------------------------------------------------------------------------
# the set


def _check_args(out_dir: str, fonts: list[str], pages: int, words_per_page: tuple[int, int],
                page_size: tuple[int, int], seed: int, jpeg_quality: tuple[int, int]) -> None:
    if os.path.isfile(out_dir):
        raise HwocrError(f"stand-in scans: {out_dir} is a file; give a new or empty folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise HwocrError(f"stand-in scans: {out_dir} already holds files; give a new or empty folder")
    if not fonts:
        raise HwocrError("stand-in scans: no fonts given")
    lo, hi = words_per_page
    checks = [(pages >= 1, f"pages must be at least 1, got {pages}"),
              (1 <= lo <= hi, f"words_per_page must be (low, high) with 1 <= low <= high, got {words_per_page}"),
              (min(page_size) >= 64, f"page_size must be at least 64x64 pixels, got {page_size}"),
              (seed >= 0, f"seed must not be negative, got {seed}"),
              (1 <= jpeg_quality[0] <= jpeg_quality[1] <= 95, f"jpeg_quality must be (low, high) within 1..95, got "
                                                              f"{jpeg_quality}")]
    for ok, message in checks:
        if not ok:
            raise HwocrError(f"stand-in scans: {message}")


def make_scans(out_dir: str, fonts: list[str], words: list[str], pages: int = 20,
               words_per_page: tuple[int, int] = (8, 14), page_size: tuple[int, int] = (1240, 1754), seed: int = 0,
               *, photo: bool = True, jpeg_quality: tuple[int, int] = (60, 85)) -> dict:
    """Write a set of stand-in scans into out_dir (new or empty; built beside it and renamed into place):
    pages/page-NNNN.jpg with pages/Label.txt (PPOCRLabel), easyocr/NNNN.png with easyocr/labels.csv (EasyOCR's
    trainer), labelstudio.json (Label Studio's export of its OCR template), manifest.json and README.md.

    fonts: font files, one drawing each page in a seeded cycle; words: drawn in a seeded order, each once until they
    run out (a word a page's font cannot draw waits for another font's page). photo=False leaves the pages flat
    (white paper, no light, shadow, blur or noise) with the same words in the same places, warp included.
    Returns {"dir", "pages", "words", "fonts", "label_txt", "easyocr_csv", "labelstudio"}.
    """
    if not storage.is_local(out_dir):
        raise HwocrError(f"stand-in scans: {out_dir!r} is not a local folder")
    out_dir = os.path.abspath(storage.local_path(out_dir))
    size = (int(page_size[0]), int(page_size[1]))
    _check_args(out_dir, fonts, pages, words_per_page, size, seed, jpeg_quality)
    for f in fonts:  # all of them, before any is read
        refuse_reserved(f"font {f}", os.path.basename(f))
    words = _clean_words(words)
    if not words:
        raise HwocrError("stand-in scans: the word list is empty")
    writers = [_writer(f, words) for f in fonts]
    words = [w for w in words if any(wr.draws(w) for wr in writers)]  # kept: each font draws at least one
    with storage.atomic_path(out_dir) as tmp:
        counts = _write_set(tmp, writers, words, pages, words_per_page, size, seed, photo, jpeg_quality)
    return {"dir": out_dir, "pages": pages, "words": counts, "fonts": len(writers),
            **{key: os.path.join(out_dir, rel) for key, rel in
               (("label_txt", FORMATS["pages"]), ("easyocr_csv", FORMATS["easyocr"]),
                ("labelstudio", FORMATS["labelstudio"]))}}


def _write_set(root: str, writers: list[Writer], words: list[str], pages: int, words_per_page: tuple[int, int],
               size: tuple[int, int], seed: int, photo: bool, jpeg_quality: tuple[int, int]) -> int:
    """Fill root with the set; the number of words drawn."""
    os.makedirs(os.path.join(root, "pages"))
    os.makedirs(os.path.join(root, "easyocr"))
    plan = _rng(seed, "plan")
    order = plan.permutation(len(writers))
    counts = plan.integers(words_per_page[0], words_per_page[1] + 1, size=pages)
    stream, pending = _word_stream(words, seed), deque()
    digits = max(4, len(str(pages)))
    crop_digits = max(4, len(str(int(counts.sum()))))
    label_lines, tasks, rows, page_fonts = [], [], [], []
    for number in range(1, pages + 1):
        k = int(order[(number - 1) % len(writers)])
        writer = writers[k]
        page_words = _take(stream, pending, writer, int(counts[number - 1]))
        jpeg, placed = _render_page(writer, page_words, size, seed, number, photo, jpeg_quality)
        name = f"page-{number:0{digits}d}.jpg"
        with open(os.path.join(root, "pages", name), "wb") as f:
            f.write(jpeg)
        label_lines.append(_label_line(f"pages/{name}", placed))
        upload = f"{hashlib.sha256(jpeg).hexdigest()[:8]}-{name}"  # Label Studio's prefix on an uploaded file
        tasks.append(_ls_task(number, upload, placed, size, seed))
        page = Image.open(io.BytesIO(jpeg))
        for p in placed:
            crop = f"{len(rows) + 1:0{crop_digits}d}.png"
            with open(os.path.join(root, "easyocr", crop), "wb") as f:
                f.write(_png(_crop(page, p.quad)))
            rows.append((crop, p.text))
        page_fonts.append(k)
    with open(os.path.join(root, FORMATS["pages"]), "w", encoding="utf-8", newline="") as f:
        f.writelines(label_lines)
    with open(os.path.join(root, FORMATS["easyocr"]), "w", encoding="utf-8", newline="") as f:
        # "\n" rows: EasyOCR's trainer splits rows with a regex of its own, which would keep a "\r" in the word
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["filename", "words"])
        out.writerows(rows)
    _write_json(os.path.join(root, FORMATS["labelstudio"]), tasks)
    _write_json(os.path.join(root, "manifest.json"), {
        "seed": seed, "pages": pages, "words": len(rows), "page_size": list(size), "formats": FORMATS,
        "fonts": [{"file": w.path, "sha256": w.sha256, "family": w.family} for w in writers],
        "page_fonts": page_fonts})
    with open(os.path.join(root, "README.md"), "w", encoding="utf-8") as f:
        f.write(_readme(pages, len(rows), writers, seed))
    return len(rows)


def _write_json(path: str, obj: object) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


__all__ = ["BOX_MARGIN", "CROP_MARGIN", "FORMATS", "families_fonts", "make_scans"]


def scan_fonts(source_url: str) -> list[dict]:
    """The fonts a stand-in set was drawn with ([] for anything else): the manifest.json make_scans writes, found in
    the folder a real source names or the one above it (a source is the set's pages/ or easyocr/ folder, or its
    labelstudio.json)."""
    url = storage.normalize(source_url)
    fs, path = storage.fs_and_path(url)
    folder = path if fs.isdir(path) else os.path.dirname(path)
    for candidate in (folder, os.path.dirname(folder)):
        manifest = os.path.join(candidate, "manifest.json")
        if fs.isfile(manifest):
            try:
                fonts = json.loads(fs.cat_file(manifest)).get("fonts")
            except (ValueError, AttributeError):
                return []
            return [f for f in fonts or [] if isinstance(f, dict) and f.get("sha256")]
    return []


def check_scan_leak(train_fonts: list[str], source_urls: list[str]) -> None:
    """A font (or a font of its family) that drew stand-in scans must not render the synthetic training images of
    the same run: the model would be scored on a hand it trained on, and mixing would pass for generalization."""
    def squash(name: str) -> str:
        return "".join(name.split()).casefold()

    for url in source_urls:
        drawn = scan_fonts(url)
        by_sha = {f["sha256"]: f for f in drawn}
        families = {squash(f["family"]): f for f in drawn if f.get("family")}
        for path in train_fonts if drawn else ():
            f = by_sha.get(font_pool.font_sha256(path)) or families.get(squash(_family(path)))
            if f:
                raise HwocrError(f"real source {url} was drawn in {f.get('family') or f['file']} (its manifest.json), "
                                 f"and the synthetic training renders {path} of the same family: leave it out of "
                                 "render.fonts (or render.pool), or draw the stand-ins in a held-out family")
