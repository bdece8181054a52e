"""Handwriting realism effects, applied to a rendered word image before it is encoded.

Each effect is a small seeded step with its own settings model. `apply_effects` runs the enabled ones in
the fixed order of ORDER, each drawing from its own generator seeded by (seed, effect name), so the output
depends only on (image, settings, seed): never on the global random, numpy or OpenCV state, on the order
other images were rendered in, or on which other effects are enabled. Images are mode "L" or "RGB", dark ink
on a light background; every effect keeps the mode and size, except craft_crop and pad_crop, which change the size.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from PIL import Image

from hwocr import hashing
from synth.effect_settings import (
    _MODES,
    ORDER,
    BlurJpegSettings,
    CraftCropSettings,
    EffectsSettings,
    ElasticSettings,
    InkSettings,
    PadCropSettings,
    PaperSettings,
    StrokeSettings,
)


def effect_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, hashing.seed(name)]))


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _background(a: np.ndarray) -> np.ndarray:
    """Per-channel brightest value: the paper colour (white for trdg's plain backgrounds)."""
    if a.ndim == 2:
        return np.array([a.max()])
    # Row-wise reductions first: numpy's max over a short strided axis is ten times slower.
    return a.reshape(a.shape[0], -1).max(axis=0).reshape(-1, a.shape[2]).max(axis=0)


def _elastic(a: np.ndarray, s: ElasticSettings, rng: np.random.Generator) -> np.ndarray:
    h, w = a.shape[:2]
    # Random offsets on a coarse grid, interpolated up: a smooth field for a fraction of the cost of
    # blurring full-size noise (Simard's alpha/sigma), with sigma as the grid spacing.
    gh, gw = max(2, round(h / s.sigma) + 2), max(2, round(w / s.sigma) + 2)
    coarse = rng.uniform(-s.alpha, s.alpha, size=(2, gh, gw)).astype(np.float32)
    dx = cv2.resize(coarse[0], (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(coarse[1], (w, h), interpolation=cv2.INTER_CUBIC)
    dx += np.arange(w, dtype=np.float32)[None, :]
    dy += np.arange(h, dtype=np.float32)[:, None]
    return cv2.remap(a, dx, dy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _stroke(a: np.ndarray, s: StrokeSettings, rng: np.random.Generator) -> np.ndarray:
    change = int(rng.integers(1, s.max_pixels + 1))
    thicken = s.direction == "thicken" or (s.direction == "both" and rng.random() < 0.5)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (change + 1, change + 1))
    # Ink is dark: thickening the strokes is an erosion of the image, thinning a dilation.
    return cv2.erode(a, kernel) if thicken else cv2.dilate(a, kernel)


def _smooth_curve(rng: np.random.Generator, n: int, period: float) -> np.ndarray:
    """n values in [0, 1] varying smoothly with about one swell per period samples."""
    knots = max(2, math.ceil(n / period) + 2)
    xk = np.linspace(0, (knots - 1) * period, knots) - rng.uniform(0, period)
    yk = rng.uniform(0, 1, size=knots)
    t = np.interp(np.arange(n, dtype=np.float64), xk, yk)
    return 0.5 - 0.5 * np.cos(np.pi * t)  # eases the linear pieces' corners


def _ink(a: np.ndarray, s: InkSettings, rng: np.random.Generator) -> np.ndarray:
    h, w = a.shape[:2]
    level = rng.uniform(s.level_min, s.level_max)
    fade = _smooth_curve(rng, w, s.pressure_scale * h)
    factor = (level * (1 - s.pressure * fade)).astype(np.float32)[None, :]
    bg = _background(a).astype(np.float32)
    if a.ndim == 3:
        # Ink darkens the channels unevenly: a blue, brown or greenish cast on the near-black ink.
        tint = (1 - s.color * rng.uniform(0, 1, size=3)).astype(np.float32)
        factor = factor[..., None] * tint
    return _to_uint8(bg - (bg - a.astype(np.float32)) * factor)


def _paper(a: np.ndarray, s: PaperSettings, rng: np.random.Generator) -> np.ndarray:
    h, w = a.shape[:2]
    bg = _background(a).astype(np.float32)
    f = a.astype(np.float32)
    if s.show_through > 0:
        # The back's writing shows as grey whatever its colour: one channel is enough, and a third of the cost.
        gray = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) if a.ndim == 3 else a
        back = cv2.flip(gray, 1 if rng.random() < 0.5 else -1)
        back = cv2.GaussianBlur(back, (0, 0), sigmaX=rng.uniform(1.0, 2.5), borderType=cv2.BORDER_REPLICATE)
        dark = np.float32(rng.uniform(0, s.show_through)) * (np.float32(gray.max()) - back.astype(np.float32))
        f -= dark[..., None] if a.ndim == 3 else dark
    if s.line_darkness > 0 and rng.random() < s.lines_probability:
        y = int(rng.uniform(0.55, 0.95) * h)
        rows = [y]
        if rng.random() < 0.5:
            rows.append(y - int(rng.uniform(0.55, 0.9) * h))
        value = bg * (1 - rng.uniform(0.5, 1) * s.line_darkness)
        thick = 1 + int(rng.random() < 0.3)
        for r in rows:
            if 0 <= r < h:
                band = f[r : r + thick]
                np.minimum(band, value, out=band)
    if s.gradient > 0:
        theta = rng.uniform(0, 2 * math.pi)
        g = np.add.outer(
            np.float32(math.sin(theta)) * np.arange(h, dtype=np.float32),
            np.float32(math.cos(theta)) * np.arange(w, dtype=np.float32),
        )
        g -= g.min()
        g *= rng.uniform(0, s.gradient) / max(float(g.max()), 1e-6)
        f *= (1 - g)[..., None] if a.ndim == 3 else 1 - g
    if s.noise > 0:
        n = rng.standard_normal((h, w), dtype=np.float32) * np.float32(rng.uniform(0, s.noise))
        f += n[..., None] if a.ndim == 3 else n
    return _to_uint8(f)


def _blur_jpeg(a: np.ndarray, s: BlurJpegSettings, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(s.blur_radius_min, s.blur_radius_max)
    if sigma > 0:
        a = cv2.GaussianBlur(a, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)
    if rng.random() < s.jpeg_probability:
        quality = int(rng.integers(s.jpeg_quality_min, s.jpeg_quality_max + 1))
        color = a.ndim == 3
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(a, cv2.COLOR_RGB2BGR) if color else a, [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        a = cv2.imdecode(buf, cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE)
        if color:
            a = cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    return a


def ink_extent(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows and the columns holding ink: pixels darker than the paper (the lightest tone) by more than 48."""
    ink = gray < gray.max() - 48
    return np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))


def _pad_crop(a: np.ndarray, s: PadCropSettings, rng: np.random.Generator) -> np.ndarray:
    h, w = a.shape[:2]
    most = s.max_fraction * h
    top, bottom, left, right = (int(round(v)) for v in rng.uniform(-most if s.allow_crop else 0, most, size=4))
    # A crop takes only blank margin, never ink: a cut glyph would no longer match its label.
    rows, cols = ink_extent(a if a.ndim == 2 else a.mean(axis=2))
    if rows.size:
        top, bottom = max(top, -int(rows[0])), max(bottom, -(h - 1 - int(rows[-1])))
        left, right = max(left, -int(cols[0])), max(right, -(w - 1 - int(cols[-1])))
    top, bottom = max(top, -(h // 4)), max(bottom, -(h // 4))
    left, right = max(left, -(w // 4)), max(right, -(w // 4))
    a = a[max(-top, 0) : h - max(-bottom, 0), max(-left, 0) : w - max(-right, 0)]
    pads = [max(top, 0), max(bottom, 0), max(left, 0), max(right, 0)]
    if any(pads):
        bg = [int(v) for v in _background(a)]
        a = cv2.copyMakeBorder(a, *pads, cv2.BORDER_CONSTANT, value=(bg + [0, 0, 0])[:4])
    return np.ascontiguousarray(a)


CRAFT_MARGINS = importlib.resources.files(__package__) / "data" / "craft_margins.json"
CRAFT_CUT = 0.1  # bench/craft_margins.py's CUT: the deepest a measured crop cuts into the ink, in ink heights


@functools.cache
def craft_margins() -> np.ndarray:
    """The measured crops: [top, bottom, left, right] margins around the ink, in ink heights, one row a crop."""
    return np.asarray(json.loads(CRAFT_MARGINS.read_text(encoding="utf-8"))["margins"], dtype=np.float64)


def _craft_crop(a: np.ndarray, s: CraftCropSettings, rng: np.random.Generator) -> np.ndarray:
    table = craft_margins()
    median = np.median(table, axis=0)
    # A spread over 1 may push a margin into the ink: at most CUT of its height, as the table's crops at most cut.
    margins = np.maximum(median + s.spread * (table[rng.integers(len(table))] - median), -CRAFT_CUT)
    rows, cols = ink_extent(a if a.ndim == 2 else a.mean(axis=2))
    if not rows.size:
        return a
    top, bottom, left, right = (int(round(v * (rows[-1] - rows[0] + 1))) for v in margins)
    y0, x0 = int(rows[0]) - top, int(cols[0]) - left
    y1, x1 = max(int(rows[-1]) + 1 + bottom, y0 + 1), max(int(cols[-1]) + 1 + right, x0 + 1)
    h, w = a.shape[:2]
    out = a[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]
    pads = [max(-y0, 0), max(y1 - h, 0), max(-x0, 0), max(x1 - w, 0)]
    if any(pads):
        bg = [int(v) for v in _background(a)]
        out = cv2.copyMakeBorder(out, *pads, cv2.BORDER_CONSTANT, value=(bg + [0, 0, 0])[:4])
    return np.ascontiguousarray(out)


EFFECTS: dict[str, Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]] = {
    "stroke": _stroke,
    "ink": _ink,
    "elastic": _elastic,
    "craft_crop": _craft_crop,
    "pad_crop": _pad_crop,
    "paper": _paper,
    "blur_jpeg": _blur_jpeg,
}


def apply_effects(img: Image.Image, settings: EffectsSettings | dict | None, seed: int) -> Image.Image:
    """img with the enabled effects applied, in ORDER; img itself when none is enabled or none fires.

    settings may be the model or its model_dump() (worker processes receive dicts). seed: a non-negative int.
    """
    if settings is None:
        return img
    if not isinstance(settings, EffectsSettings):
        settings = EffectsSettings.model_validate(settings)
    if not settings.active():
        return img
    if img.mode not in _MODES:
        raise ValueError(f"effects need a mode L or RGB image, got mode {img.mode!r}")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    a = None
    for name in ORDER:
        s = getattr(settings, name)
        if not s.enabled or s.probability <= 0:
            continue
        rng = effect_rng(seed, name)
        if rng.random() >= s.probability:
            continue
        if a is None:
            a = np.asarray(img)
        a = EFFECTS[name](a, s, rng)
    return img if a is None else Image.fromarray(a, img.mode)


class Augmenter:
    """augment(image, seed) for training-time augmentation: apply_effects with fixed settings (picklable)."""

    def __init__(self, settings: EffectsSettings | dict) -> None:
        self.settings = EffectsSettings.model_validate(settings)

    def __call__(self, img: Image.Image, seed: int) -> Image.Image:
        return apply_effects(img, self.settings, seed)


def augmenter(settings: EffectsSettings | dict | None) -> Augmenter | None:
    """An Augmenter for these settings, or None when no effect is on (the loader then skips the work)."""
    if settings is None:
        return None
    a = Augmenter(settings)
    return a if a.settings.active() else None
