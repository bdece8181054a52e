"""Rendering inside worker processes: trdg's drawing steps, seeded per image.

Imports no Prefect: worker processes start fast and stay small. Every image is seeded from
(seed, split, font hash, index, attempt), so its bytes never depend on shard layout or worker count.

render_one re-expresses trdg 1.8.0's FakeTextDataGenerator.generate (horizontal computer text, no output folder)
with trdg's own building blocks, and draws every random number trdg would draw from the global `random` module, in
the same order, from a generator of the image's own: the bytes are trdg's (tests compare them with unpatched trdg).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import random
import shutil
import signal
import tarfile
import threading
import time
from collections import Counter
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFilter, ImageFont
from pydantic import BaseModel, ConfigDict
from trdg import background_generator, distorsion_generator
from trdg.computer_text_generator import _compute_character_width
from trdg.utils import get_text_width

from hwocr import hashing
from synth.effect_settings import EffectsSettings, GlyphJitterSettings
from synth.effects import apply_effects, effect_rng

MAX_ATTEMPTS = 8
# A shard's images travel as one object: thousands of small PUTs cost seconds on object stores.
ARCHIVE = "images.tar"
PROGRESS_EVERY = 25
_progress = None  # multiprocessing queue set by init_worker


class PixelSettings(BaseModel):
    """The settings that change image bytes: RenderSettings.pixel_settings() (which documents each field)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    height: int
    background: Literal[0, 1, 2]
    margins: tuple[int, int, int, int]
    skew_angle: int
    random_skew: bool
    blur: int
    random_blur: bool
    distortion: Literal[0, 1, 2, 3]
    distortion_orientation: Literal[0, 1, 2]
    alignment: Literal[0, 1, 2]
    text_color: str
    space_width: float
    character_spacing: int
    fit: bool
    stroke_width: int
    stroke_fill: str
    grayscale: bool
    image_format: Literal["png", "jpg"]
    jpeg_quality: int
    png_compress_level: int
    effects: EffectsSettings | None = None
    glyph_jitter: GlyphJitterSettings | None = None


class RenderJob(BaseModel):
    """Indices [start, stop) of one font and split, rendered into dir."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    settings: PixelSettings
    words: tuple[str, ...]
    first: tuple[str, ...] = ()  # the words of images 0, 1, ...: this font's share of the syllable coverage
    covered: str
    split: str
    font_sha: str
    font_path: str
    start: int
    stop: int
    key: str
    dir: str
    staged: bool = False  # dir is a staging folder its shard made: a piece that starts after it went never remakes it


@functools.lru_cache(maxsize=64)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    # trdg loads the font file again for every image. Threads may share a font: Pillow's FreeType calls hold the GIL.
    return ImageFont.truetype(font=path, size=size)


@functools.lru_cache(maxsize=1 << 14)
def _glyph(path: str, size: int, c: str, ink: int):
    """ImageDraw.text's mask and offset for one character at an integer place (anchor "la", fontmode L)."""
    return _font(path, size).getmask2(c, "L", None, None, None, 0, "la", ink, (0.0, 0.0), stroke_filled=True)


@functools.lru_cache(maxsize=64)
def _space_width(path: str, size: int) -> int:
    return get_text_width(_font(path, size), " ")


@functools.lru_cache(maxsize=1 << 16)
def _metrics(path: str, size: int, c: str) -> tuple[int, int]:
    """trdg's width of character c (_compute_character_width) and its bottom (getbbox): the same for every image."""
    font = _font(path, size)
    return _compute_character_width(font, c), font.getbbox(c)[3]


def _gray(colour: tuple[int, int, int]) -> bool:
    return colour[0] == colour[1] == colour[2]


@functools.lru_cache(maxsize=64)
def _colour_range(spec: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    colors = [ImageColor.getrgb(c) for c in spec.split(",")]
    return colors[0], colors[-1]


def _colour(spec: str, rnd: random.Random) -> tuple[int, int, int]:
    """A colour drawn in the box between the two ends of 'c1,c2' (or c1 itself), as trdg draws it."""
    c1, c2 = _colour_range(spec)
    return tuple(rnd.randint(min(c1[k], c2[k]), max(c1[k], c2[k])) for k in range(3))


class _Jitter:
    """Per-glyph jitter of one word: its settings, generator, and the canvas padding that keeps glyphs whole."""

    def __init__(self, settings: GlyphJitterSettings, rng: np.random.Generator, n_chars: int, size: int) -> None:
        self.s, self.rng, self.size = settings, rng, size
        sway = math.sin(math.radians(settings.rotation)) * 0.5 + settings.scale
        self.pad_x = math.ceil(size * (settings.spacing * n_chars + sway)) + 2
        self.pad_y = math.ceil(size * (settings.baseline + sway)) + 2
        self.drift, self.glyphs = 0.0, 0

    def draw(self, im: Image.Image, x: int, glyph: str, fill, font, stroke_width: int, stroke_fill) -> None:
        """glyph, meant for (x, 0) of the unpadded canvas, shifted, scaled and rotated a little onto im."""
        if not glyph.strip():
            return
        s, rng = self.s, self.rng
        if self.glyphs:
            self.drift += rng.uniform(-1, 1) * s.spacing * self.size
        self.glyphs += 1
        scale = 1 + rng.uniform(-1, 1) * s.scale
        angle = rng.uniform(-1, 1) * s.rotation
        dy = rng.uniform(-1, 1) * s.baseline * self.size
        m = stroke_width + 2
        w = int(font.getlength(glyph)) + 2 * m
        h = im.height - 2 * self.pad_y + 2 * m
        tile = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        ImageDraw.Draw(tile).text((m, m), glyph, fill=fill, font=font, stroke_width=stroke_width,
                                  stroke_fill=stroke_fill)
        tile = tile.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
        tile = tile.rotate(angle, resample=Image.BICUBIC, expand=True)
        cx = x + self.pad_x - m + w / 2 + self.drift
        cy = self.pad_y - m + h / 2 + dy
        left, top = round(cx - tile.width / 2), round(cy - tile.height / 2)
        x0, y0 = max(0, -left), max(0, -top)
        x1, y1 = min(tile.width, im.width - left), min(tile.height, im.height - top)
        if x1 > x0 and y1 > y0:
            im.alpha_composite(tile.crop((x0, y0, x1, y1)), (left + x0, top + y0))


def _text_image(word: str, font_path: str, s: PixelSettings, rnd: random.Random, jitter: _Jitter | None,
                with_mask: bool, two_bands: bool = False) -> tuple[Image.Image, Image.Image | None, bool]:
    """The word in RGBA, trdg's glyph mask when asked (trdg's _generate_horizontal_text, no word split), and whether
    its ink is gray (R = G = B in every pixel). With two_bands, a gray word without jitter or mask comes in LA.

    With jitter, each glyph is drawn on its own onto a padded canvas, which is then cut back to the unpadded one,
    widened only where a glyph reaches beyond it: the word keeps trdg's scale."""
    font = _font(font_path, s.height)
    space = int(_space_width(font_path, s.height) * s.space_width)
    metrics = [_metrics(font_path, s.height, c) for c in word]
    widths = [m[0] if c != " " else space for c, m in zip(word, metrics, strict=True)]
    width = sum(widths) + s.character_spacing * (len(word) - 1)
    height = max(m[1] for m in metrics)  # trdg's get_text_height, via getsize, gone in Pillow 10
    pad_x, pad_y = (jitter.pad_x, jitter.pad_y) if jitter is not None else (0, 0)
    size = (width + 2 * pad_x, height + 2 * pad_y)
    mask = mask_draw = None
    if with_mask:
        mask = Image.new("RGB", size, (0, 0, 0))
        mask_draw = ImageDraw.Draw(mask, mode="RGB")
        mask_draw.fontmode = "1"
    fill = _colour(s.text_color, rnd)
    stroke = _colour(s.stroke_fill, rnd)
    gray = _gray(fill) and (s.stroke_width == 0 or _gray(stroke))
    # A gray word drawn on gray and alpha gets the R (= G = B) and alpha of trdg's RGBA drawing: half the bands.
    if gray and two_bands and jitter is None and not with_mask:
        img = Image.new("LA", size, (0, 0))
        ink, stroke_ink = (fill[0], 255), (stroke[0], 255)
    else:
        img = Image.new("RGBA", size, (0, 0, 0, 0))
        ink, stroke_ink = fill, stroke
    draw = ImageDraw.Draw(img) if jitter is None else None
    # Without stroke, a glyph is the same mask at an integer place every time: draw_text's own two steps, the
    # mask (FreeType, most of the drawing's time) made once per font and character.
    cached = draw is not None and s.stroke_width == 0 and draw.fontmode == "L"
    ink_value = draw._getink(ink)[0] if cached else None
    for i, c in enumerate(word):
        x = sum(widths[0:i]) + i * s.character_spacing
        if cached:
            mask, (dx, dy) = _glyph(font_path, s.height, c, ink_value)
            draw.draw.draw_bitmap((x + dx, dy), mask, ink_value)
        elif jitter is None:
            draw.text((x, 0), c, fill=ink, font=font, stroke_width=s.stroke_width, stroke_fill=stroke_ink)
        else:
            jitter.draw(img, x, c, fill, font, s.stroke_width, stroke)
        if mask_draw is not None:  # the mask keeps the unjittered glyph positions
            mask_draw.text((x + pad_x, pad_y), c, fill=((i + 1) // (255 * 255), (i + 1) // 255, (i + 1) % 255),
                           font=font, stroke_width=s.stroke_width, stroke_fill=stroke)
    if s.fit:
        box = img.getbbox()
        img = img.crop(box)
        mask = mask.crop(box) if mask is not None else None
    if jitter is not None and (box := img.getbbox()) is not None:
        crop = (min(box[0], pad_x), min(box[1], pad_y), max(box[2], img.width - pad_x),
                max(box[3], img.height - pad_y))
        img = img.crop(crop)
        mask = mask.crop(crop) if mask is not None else None
    return img, mask, gray


def _distort(img: Image.Image, mask: Image.Image | None, s: PixelSettings,
             rnd: random.Random) -> tuple[Image.Image, Image.Image | None]:
    vertical, horizontal = s.distortion_orientation in (0, 2), s.distortion_orientation in (1, 2)
    # trdg distorts image and mask together; a black stand-in when the mask is not needed.
    m = mask if mask is not None else Image.new("RGB", img.size)
    if s.distortion == 1:
        img, m = distorsion_generator.sin(img, m, vertical=vertical, horizontal=horizontal)
    elif s.distortion == 2:
        img, m = distorsion_generator.cos(img, m, vertical=vertical, horizontal=horizontal)
    else:  # trdg's random(), its offsets drawn from rnd
        max_offset = int(img.height**0.4)
        img, m = distorsion_generator._apply_func_distorsion(
            img, m, vertical=vertical, horizontal=horizontal, max_offset=max_offset,
            func=lambda x: rnd.randint(0, max_offset))
    return img, (m if mask is not None else None)


def _quasicrystal(height: int, width: int, rnd: random.Random) -> Image.Image:
    """trdg's quasicrystal background, its three draws from rnd."""
    image = Image.new("L", (width, height))
    pixels = image.load()
    frequency = rnd.random() * 30 + 20
    phase = rnd.random() * 2 * math.pi
    rotation_count = rnd.randint(10, 20)
    for kw in range(width):
        y = float(kw) / (width - 1) * 4 * math.pi - 2 * math.pi
        for kh in range(height):
            x = float(kh) / (height - 1) * 4 * math.pi - 2 * math.pi
            z = 0.0
            for i in range(rotation_count):
                r = math.hypot(x, y)
                a = math.atan2(y, x) + i * math.pi * 2.0 / rotation_count
                z += math.cos(r * math.sin(a) * frequency + phase)
            pixels[kw, kh] = int(255 - round(255 * z / rotation_count))
    return image.convert("RGBA")


def _background(s: PixelSettings, height: int, width: int, rnd: random.Random, seed: int) -> Image.Image:
    if s.background == 0:
        # cv2.randn draws from OpenCV's generator, which is per thread: seeded and drawn here, on this thread, no
        # other thread can come between.
        cv2.setRNGSeed(seed % (1 << 31))
        return background_generator.gaussian_noise(height=height, width=width)
    if s.background == 1:
        return background_generator.plain_white(height=height, width=width)
    return _quasicrystal(height, width, rnd)


def _mean(img: Image.Image, mask: Image.Image | None = None) -> list[float]:
    """ImageStat.Stat(img, mask).mean with the per-band sums in numpy: the same numbers, a tenth of the time."""
    h = np.asarray(img.histogram(mask), dtype=np.int64).reshape(-1, 256)
    sums, counts = h @ np.arange(256, dtype=np.int64), h.sum(axis=1)
    return [int(t) / int(n) if n else 0 for t, n in zip(sums, counts, strict=True)]


def init_worker(progress_queue=None) -> None:
    # A terminal's Ctrl-C goes to the whole process group: the parent ends its workers itself, and a worker
    # interrupted while it waits for work would print multiprocessing's traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _progress
    _progress = progress_queue
    threading.Thread(target=_follow_parent, args=(os.getppid(),), daemon=True).start()


def _follow_parent(parent: int) -> None:
    """End this worker once its parent is gone: a run killed outright (SIGKILL) cannot end its workers, and an
    orphan would render on for minutes. The parent's death reparents the worker, which changes getppid()."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def is_blank(img: Image.Image) -> bool:
    lo, hi = (img if img.mode == "L" else img.convert("L")).getextrema()
    return hi - lo < 32


def render_one(word: str, font_path: str, s: PixelSettings, seed: int) -> Image.Image | None:
    """One image of word, exactly as trdg draws it with settings s, from a fixed seed; None where trdg rejects it."""
    rnd = random.Random(seed)
    jitter = None
    g = s.glyph_jitter
    if g is not None and g.enabled:
        rng = effect_rng(seed, "glyph_jitter")
        if rng.random() < g.probability:
            jitter = _Jitter(g, rng, len(word), s.height)
    # trdg's mask serves only its contrast check, which cannot fail on backgrounds 0 and 1: their mean (RGBA
    # bands over 3) is above 300, the text's (two bands over 3) at most 170.
    check = s.background == 2
    img, mask, gray = _text_image(word, font_path, s, rnd, jitter, with_mask=check, two_bands=not s.distortion)
    random_angle = rnd.randint(0 - s.skew_angle, s.skew_angle)
    angle = random_angle if s.random_skew else s.skew_angle
    img = img.rotate(angle, expand=1)
    mask = mask.rotate(angle, expand=1) if check else None
    if s.distortion:
        img, mask = _distort(img, mask, s, rnd)
    margin_top, margin_left, margin_bottom, margin_right = s.margins
    text_height = s.height - (margin_top + margin_bottom)
    new_width = int(img.size[0] * (float(text_height) / float(img.size[1])))
    width = new_width + margin_left + margin_right
    if gray and not check:
        out = _compose_gray(img, (new_width, text_height), s, width, rnd, seed)
    else:
        img = img.resize((new_width, text_height), Image.Resampling.LANCZOS)
        background = _background(s, s.height, width, rnd, seed)
        if check:
            mask = mask.resize((new_width, text_height), Image.Resampling.NEAREST)
            if abs(sum(_mean(img, mask.split()[2])[:2]) / 3 - sum(_mean(background)) / 3) < 15:
                return None
        # trdg ignores alignment when the width is its default (-1), as here: the word is pasted at the left margin.
        background.paste(img, (margin_left, margin_top), img)
        out = background.convert("L" if s.grayscale else "RGB")
    radius = s.blur if not s.random_blur else rnd.random() * s.blur
    return out.filter(ImageFilter.GaussianBlur(radius=radius)) if radius else out  # radius 0: Pillow copies


def _compose_gray(img: Image.Image, size: tuple[int, int], s: PixelSettings, width: int, rnd: random.Random,
                  seed: int) -> Image.Image:
    """trdg's resize, paste and convert of a gray word onto a gray background, on one gray band and alpha instead of
    four bands: the same bytes. Pillow premultiplies LA and RGBA with the same formula, resamples every band alike
    and blends every band with the same alpha, so each of R, G and B equals L at every step."""
    la = (img if img.mode == "LA" else img.convert("LA")).resize(size, Image.Resampling.LANCZOS)
    if s.background == 1:  # trdg's plain_white before its convert to RGBA
        background = Image.new("L", (width, s.height), 255)
    else:
        background = _background(s, s.height, width, rnd, seed).convert("L")
    background.paste(la.convert("L"), (s.margins[1], s.margins[0]), la)
    return background if s.grayscale else background.convert("RGB")


def encode(img: Image.Image, s: PixelSettings) -> bytes:
    buf = io.BytesIO()
    if s.image_format == "jpg":
        img.save(buf, "JPEG", quality=s.jpeg_quality)
    else:
        img.save(buf, "PNG", compress_level=s.png_compress_level)
    return buf.getvalue()


def _piece(out: str, start: int) -> str:
    return os.path.join(out, "images", f"{start:09d}.tar")


def render_range(job: RenderJob) -> dict:
    """Render indices [start, stop) of one font into job.dir/images/<start>.tar, the members of the shard's archive
    (no end-of-archive blocks), and return labels, hashes and counts: one file per piece, not one per image.

    Labels already name the images as members of the shard's archive, which write_manifest joins."""
    s = job.settings
    words = job.words
    covered = set(job.covered)
    ext = "jpg" if s.image_format == "jpg" else "png"
    out = job.dir
    if job.staged:  # mkdir, not makedirs: a piece that starts after its shard failed must not remake the staging
        try:
            os.mkdir(os.path.join(out, "images"))
        except FileExistsError:
            pass
    else:
        os.makedirs(os.path.join(out, "images"), exist_ok=True)
    rejected: Counter = Counter()
    dropped: Counter = Counter()
    files: dict[str, str] = {}
    labels: list[str] = []
    pending = 0
    with open(_piece(out, job.start), "wb") as piece:
        for j in range(job.start, job.stop):
            for attempt in range(MAX_ATTEMPTS):
                r = random.Random(hashing.seed(s.seed, job.split, job.font_sha, j, attempt))
                word = words[r.randrange(len(words))]  # drawn even when unused: the image's seeds stay the same
                if j < len(job.first):
                    word = job.first[j]
                if not covered.issuperset(word):
                    rejected["missing_glyph"] += 1
                    continue
                img = render_one(word, job.font_path, s, r.getrandbits(63))
                if img is None:
                    rejected["low_contrast"] += 1
                    continue
                if s.effects is not None:
                    img = apply_effects(img, s.effects, r.getrandbits(63))
                if is_blank(img):
                    rejected["blank"] += 1
                    continue
                data = encode(img, s)
                name = f"{j:09d}.{ext}"
                piece.write(_member(name, data))
                files[f"{ARCHIVE}/{name}"] = hashlib.sha256(data).hexdigest()
                labels.append(f"{ARCHIVE}/{name}\t{word}\n")
                break
            else:
                dropped["render_failed"] += 1
            pending += 1
            if _progress is not None and pending >= PROGRESS_EVERY:
                _progress.put(pending)
                pending = 0
    if _progress is not None and pending:
        _progress.put(pending)
    return {"start": job.start, "labels": labels, "files": files, "rejected": rejected, "dropped": dropped}


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info.tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape")


_HEADER = _tar_header("", 0)


def _member(name: str, data: bytes) -> bytes:
    """One archive member as tarfile's addfile writes it: header, data, zeros to the next block. The header carries
    no time or owner, so the archive's bytes depend only on the images.

    tarfile's own header costs a twentieth of an image; an ASCII name under 100 bytes only changes the name, size
    and checksum fields of one template."""
    if len(name) >= 100 or not name.isascii() or len(data) >= 8**11:
        header = _tar_header(name, len(data))
    else:
        h = bytearray(_HEADER)
        h[0:len(name)] = name.encode("ascii")
        h[124:136] = b"%011o\0" % len(data)
        h[148:156] = b"        "
        h[148:156] = b"%06o\0 " % sum(h)
        header = bytes(h)
    return header + data + tarfile.NUL * (-len(data) % tarfile.BLOCKSIZE)


def write_archive(out: str, starts: list[int]) -> str:
    """Join the pieces out/images/<start>.tar, in the order given, into out/images.tar and end it as tarfile's
    close does; return its sha256."""
    path = os.path.join(out, ARCHIVE)
    h = hashlib.sha256()
    size = 0
    with open(path, "wb") as f:
        for start in starts:
            with open(_piece(out, start), "rb") as piece:
                data = piece.read()
            h.update(data)
            f.write(data)
            size += len(data)
        end = tarfile.NUL * (2 * tarfile.BLOCKSIZE + -(size + 2 * tarfile.BLOCKSIZE) % tarfile.RECORDSIZE)
        h.update(end)
        f.write(end)
    shutil.rmtree(os.path.join(out, "images"), ignore_errors=True)
    return h.hexdigest()


def write_manifest(job: RenderJob, parts: list[dict]) -> dict:
    """Join the parts of a shard (in index order) into images.tar, labels.tsv and manifest.json."""
    out = job.dir
    rejected: Counter = Counter()
    dropped: Counter = Counter()
    files: dict[str, str] = {}
    labels: list[str] = []
    for part in parts:
        labels += part["labels"]
        files.update(part["files"])
        rejected.update(part["rejected"])
        dropped.update(part["dropped"])
    archive_sha = write_archive(out, [part["start"] for part in parts])
    label_bytes = "".join(labels).encode("utf-8")
    with open(os.path.join(out, "labels.tsv"), "wb") as f:
        f.write(label_bytes)
    files["labels.tsv"] = hashlib.sha256(label_bytes).hexdigest()
    files[ARCHIVE] = archive_sha
    manifest = {
        "key": job.key,
        "split": job.split,
        "font_sha": job.font_sha,
        "start": job.start,
        "stop": job.stop,
        "counts": {"images": len(labels), "rejected": dict(rejected), "dropped": dict(dropped)},
        "files": files,
    }
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1, sort_keys=True)
    return manifest


def render_shard_here(job: RenderJob) -> dict:
    """A whole shard in this process: images.tar, labels.tsv and manifest.json."""
    return write_manifest(job, [render_range(job)])
