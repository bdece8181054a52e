"""Rendering inside worker processes: trdg's own FakeTextDataGenerator, seeded per image.

Imports no Prefect: worker processes start fast and stay small. Every image is seeded from
(seed, split, font hash, index, attempt), so its bytes never depend on shard layout or worker count.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import random
import shutil
import tarfile
import threading
from collections import Counter

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageStat

from synth.effects import apply_effects, effect_rng

MAX_ATTEMPTS = 8
# A shard's images travel as one object: thousands of small PUTs cost seconds on object stores.
ARCHIVE = "images.tar"
PROGRESS_EVERY = 25
_progress = None  # multiprocessing queue set by init_worker


def _getsize(self, text, *args, **kwargs):
    # Pillow 10 removed FreeTypeFont.getsize; trdg 1.8.0 still calls it (trdg #343).
    left, top, right, bottom = self.getbbox(text, *args, **kwargs)
    return right, bottom


@functools.lru_cache(maxsize=64)
def _truetype(font=None, size=10, **kwargs):
    return _ORIGINAL_TRUETYPE(font=font, size=size, **kwargs)


_ORIGINAL_TRUETYPE = ImageFont.truetype


class _CachedImageFont:
    """trdg reloads the font file for every image; serve it from a per-process cache instead."""

    truetype = staticmethod(_truetype)

    def __getattr__(self, name):
        return getattr(ImageFont, name)


class _FastStat(ImageStat.Stat):
    """ImageStat.Stat with the per-band sums in numpy: same integers, a tenth of the time."""

    @functools.cached_property
    def sum(self) -> list[int]:
        h = np.asarray(self.h, dtype=np.int64).reshape(-1, 256)
        return [int(v) for v in h @ np.arange(256, dtype=np.int64)]


class _ImageStatModule:
    Stat = _FastStat


class _NullDraw:
    fontmode = "1"

    def text(self, *args, **kwargs) -> None:
        pass


class _MaskFreeImageDraw:
    """trdg draws every word twice: once as the image, once as a mask it uses only for a contrast check
    that cannot fail on backgrounds 0 and 1 (their mean exceeds any text mean by over 80). For those
    backgrounds the mask's drawing is skipped; the image bytes are unchanged (tests compare them)."""

    skip_mask = False
    jitter: _Jitter | None = None

    def Draw(self, im, mode=None):  # noqa: N802 - mirrors PIL.ImageDraw.Draw
        if self.skip_mask and mode == "RGB":
            return _NullDraw()
        if self.jitter is not None:
            return _JitterDraw(im, self.jitter) if mode is None else _ShiftedDraw(ImageDraw.Draw(im, mode), self.jitter)
        return ImageDraw.Draw(im, mode)

    def __getattr__(self, name):
        return getattr(ImageDraw, name)


class _Jitter:
    """Per-glyph jitter of one word: its settings, generator, and the canvas padding that keeps glyphs whole."""

    def __init__(self, settings: dict, rng: np.random.Generator, n_chars: int, size: int) -> None:
        self.s, self.rng, self.size = settings, rng, size
        sway = math.sin(math.radians(settings["rotation"])) * 0.5 + settings["scale"]
        self.pad_x = math.ceil(size * (settings["spacing"] * n_chars + sway)) + 2
        self.pad_y = math.ceil(size * (settings["baseline"] + sway)) + 2


class _JitterDraw:
    """Draws trdg's glyphs one by one, each shifted, scaled and rotated a little, onto a padded canvas."""

    def __init__(self, im: Image.Image, jitter: _Jitter) -> None:
        self.im, self.j, self.drift, self.glyphs = im, jitter, 0.0, 0

    def text(self, xy, text, fill=None, font=None, stroke_width=0, stroke_fill=None, **kwargs) -> None:
        if not text.strip():
            return
        j, rng = self.j, self.j.rng
        if self.glyphs:
            self.drift += rng.uniform(-1, 1) * j.s["spacing"] * j.size
        self.glyphs += 1
        scale = 1 + rng.uniform(-1, 1) * j.s["scale"]
        angle = rng.uniform(-1, 1) * j.s["rotation"]
        dy = rng.uniform(-1, 1) * j.s["baseline"] * j.size
        m = stroke_width + 2
        w = int(font.getlength(text)) + 2 * m
        h = self.im.height - 2 * j.pad_y + 2 * m
        tile = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        ImageDraw.Draw(tile).text((m, m), text, fill=fill, font=font, stroke_width=stroke_width,
                                  stroke_fill=stroke_fill)
        tile = tile.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
        tile = tile.rotate(angle, resample=Image.BICUBIC, expand=True)
        cx = xy[0] + j.pad_x - m + w / 2 + self.drift
        cy = xy[1] + j.pad_y - m + h / 2 + dy
        left, top = round(cx - tile.width / 2), round(cy - tile.height / 2)
        x0, y0 = max(0, -left), max(0, -top)
        x1, y1 = min(tile.width, self.im.width - left), min(tile.height, self.im.height - top)
        if x1 > x0 and y1 > y0:
            self.im.alpha_composite(tile.crop((x0, y0, x1, y1)), (left + x0, top + y0))


class _ShiftedDraw:
    """trdg's mask drawn on the padded canvas at the unjittered glyph positions (trdg reads the mask only for
    background 2's contrast check)."""

    def __init__(self, draw, jitter: _Jitter) -> None:
        object.__setattr__(self, "draw", draw)
        object.__setattr__(self, "j", jitter)

    def text(self, xy, *args, **kwargs) -> None:
        self.draw.text((xy[0] + self.j.pad_x, xy[1] + self.j.pad_y), *args, **kwargs)

    def __setattr__(self, name, value) -> None:  # trdg sets fontmode on the mask's draw
        setattr(self.draw, name, value)

    def __getattr__(self, name):
        return getattr(self.draw, name)


class _PaddedImage:
    """trdg's Image module, with the word canvas padded while glyph jitter is on."""

    def new(self, mode, size, color=0):
        j = _DRAW.jitter
        if j is not None:
            size = (size[0] + 2 * j.pad_x, size[1] + 2 * j.pad_y)
        return Image.new(mode, size, color)

    def __getattr__(self, name):
        return getattr(Image, name)


def _jitter_crop(generate):
    """trdg's text generator, with the jittered word's canvas cut back to the unpadded one, widened only where a
    glyph reaches beyond it: the word keeps trdg's scale."""

    def wrapped(*args, **kwargs):
        img, mask = generate(*args, **kwargs)
        j = _DRAW.jitter
        box = img.getbbox() if j is not None else None
        if box is None:
            return img, mask
        crop = (min(box[0], j.pad_x), min(box[1], j.pad_y), max(box[2], img.width - j.pad_x),
                max(box[3], img.height - j.pad_y))
        return img.crop(crop), mask.crop(crop)

    return wrapped


_DRAW = _MaskFreeImageDraw()

# trdg draws from the `random` module; other threads of the process (a Dask worker's, Prefect's) may draw from it
# too, between an image's seeding and its use. trdg gets a generator of its own: the same sequence per seed.
_TRDG_RANDOM = random.Random()


@functools.lru_cache(maxsize=1)
def _generator():
    if not hasattr(ImageFont.FreeTypeFont, "getsize"):
        ImageFont.FreeTypeFont.getsize = _getsize
    # trdg prints a notice about its optional handwriting model on import.
    with contextlib.redirect_stdout(io.StringIO()):
        from trdg import background_generator, computer_text_generator, data_generator, distorsion_generator
        from trdg.data_generator import FakeTextDataGenerator
    for module in (computer_text_generator, data_generator, background_generator, distorsion_generator):
        module.rnd = _TRDG_RANDOM
    computer_text_generator.ImageFont = _CachedImageFont()
    computer_text_generator.ImageDraw = _DRAW
    computer_text_generator.Image = _PaddedImage()
    computer_text_generator.generate = _jitter_crop(computer_text_generator.generate)
    data_generator.ImageStat = _ImageStatModule
    return FakeTextDataGenerator


def init_worker(progress_queue=None) -> None:
    global _progress
    _progress = progress_queue
    _generator()


def image_seed(seed: int, split: str, font_sha: str, index: int, attempt: int) -> int:
    key = f"{seed}|{split}|{font_sha}|{index}|{attempt}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def is_blank(img: Image.Image) -> bool:
    lo, hi = (img if img.mode == "L" else img.convert("L")).getextrema()
    return hi - lo < 32


# trdg's generators, numpy's and OpenCV's seeds, the draw hooks and sys.stdout are process-wide: a process that
# renders on several threads (a Dask worker with threads_per_worker > 1) must draw one image at a time.
_RENDER_LOCK = threading.Lock()


def render_one(word: str, font_path: str, s: dict, seed: int) -> Image.Image | None:
    """One image of word, exactly as trdg draws it with settings s, from a fixed seed."""
    gen = _generator()
    jitter = s.get("glyph_jitter")
    with _RENDER_LOCK:
        _DRAW.skip_mask = s["background"] in (0, 1)
        _DRAW.jitter = None
        if jitter and jitter["enabled"]:
            rng = effect_rng(seed, "glyph_jitter")
            if rng.random() < jitter["probability"]:
                _DRAW.jitter = _Jitter(jitter, rng, len(word), s["height"])
        _TRDG_RANDOM.seed(seed)
        np.random.seed(seed % (1 << 32))
        import cv2  # trdg's gaussian-noise background draws from OpenCV's own generator

        cv2.setRNGSeed(seed % (1 << 31))
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # trdg prints when it rejects an image
                return gen.generate(
                    0, word, font_path, None, s["height"], s["image_format"], s["skew_angle"], s["random_skew"],
                    s["blur"], s["random_blur"], s["background"], s["distortion"], s["distortion_orientation"],
                    False, 2, -1, s["alignment"], s["text_color"], 0, s["space_width"], s["character_spacing"],
                    tuple(s["margins"]), s["fit"], 0, False, None,
                    stroke_width=s["stroke_width"], stroke_fill=s["stroke_fill"],
                    image_mode="L" if s["grayscale"] else "RGB",
                )
        finally:
            _DRAW.jitter = None


def encode(img: Image.Image, s: dict) -> bytes:
    buf = io.BytesIO()
    if s["image_format"] == "jpg":
        img.save(buf, "JPEG", quality=s["jpeg_quality"])
    else:
        img.save(buf, "PNG", compress_level=s["png_compress_level"])
    return buf.getvalue()


def render_range(job: dict) -> dict:
    """Render indices [start, stop) of one font into job['dir']/images; return labels, hashes and counts.

    Labels already name the images as members of the shard's archive, which write_manifest builds."""
    s = job["settings"]
    words = job["words"]
    covered = set(job["covered"])
    ext = "jpg" if s["image_format"] == "jpg" else "png"
    out = job["dir"]
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    rejected: Counter = Counter()
    dropped: Counter = Counter()
    files: dict[str, str] = {}
    labels: list[str] = []
    pending = 0
    for j in range(job["start"], job["stop"]):
        for attempt in range(MAX_ATTEMPTS):
            r = random.Random(image_seed(s["seed"], job["split"], job["font_sha"], j, attempt))
            word = words[r.randrange(len(words))]
            if not covered.issuperset(word):
                rejected["missing_glyph"] += 1
                continue
            img = render_one(word, job["font_path"], s, r.getrandbits(63))
            if img is None:
                rejected["low_contrast"] += 1
                continue
            if s.get("effects"):
                img = apply_effects(img, s["effects"], r.getrandbits(63))
            if is_blank(img):
                rejected["blank"] += 1
                continue
            data = encode(img, s)
            name = f"{j:09d}.{ext}"
            with open(os.path.join(out, "images", name), "wb") as f:
                f.write(data)
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
    return {"labels": labels, "files": files, "rejected": rejected, "dropped": dropped}


def write_archive(out: str, names: list[str]) -> str:
    """Move out/images/<name> into out/images.tar in the order given; headers carry no time or owner, so
    the archive's bytes depend only on the images."""
    path = os.path.join(out, ARCHIVE)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in names:
            src = os.path.join(out, "images", name)
            info = tarfile.TarInfo(name)
            info.size = os.path.getsize(src)
            info.mode = 0o644
            with open(src, "rb") as f:
                tar.addfile(info, f)
    shutil.rmtree(os.path.join(out, "images"), ignore_errors=True)
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(job: dict, parts: list[dict]) -> dict:
    """Join the parts of a shard (in index order) into images.tar, labels.tsv and manifest.json."""
    out = job["dir"]
    rejected: Counter = Counter()
    dropped: Counter = Counter()
    files: dict[str, str] = {}
    labels: list[str] = []
    for part in parts:
        labels += part["labels"]
        files.update(part["files"])
        rejected.update(part["rejected"])
        dropped.update(part["dropped"])
    archive_sha = write_archive(out, [line.split("\t", 1)[0].split("/", 1)[1] for line in labels])
    label_bytes = "".join(labels).encode("utf-8")
    with open(os.path.join(out, "labels.tsv"), "wb") as f:
        f.write(label_bytes)
    files["labels.tsv"] = hashlib.sha256(label_bytes).hexdigest()
    files[ARCHIVE] = archive_sha
    manifest = {
        "key": job["key"],
        "split": job["split"],
        "font_sha": job["font_sha"],
        "start": job["start"],
        "stop": job["stop"],
        "counts": {"images": len(labels), "rejected": dict(rejected), "dropped": dict(dropped)},
        "files": files,
    }
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1, sort_keys=True)
    return manifest


def render_shard_here(job: dict) -> dict:
    """A whole shard in this process: images.tar, labels.tsv and manifest.json."""
    return write_manifest(job, [render_range(job)])
