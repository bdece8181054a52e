"""The render effects' settings, one model an effect. Plain pydantic, so that a config is checked without numpy or
OpenCV (synth/effects.py applies them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Application order: the pen first (stroke width, ink), then the hand (elastic), then framing (craft_crop, pad_crop),
# then the paper under the whole frame, padding included, and last the camera or scanner (blur, JPEG).
ORDER = ("stroke", "ink", "elastic", "craft_crop", "pad_crop", "paper", "blur_jpeg")

_MODES = ("L", "RGB")


class EffectSettings(BaseModel):
    """Fields every effect has."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Apply this effect.")
    probability: float = Field(
        0.5, ge=0, le=1, description="Chance that an image gets this effect (0: never, 1: every image)."
    )

    @property
    def on(self) -> bool:
        """Whether this effect can change an image."""
        return self.enabled and self.probability > 0

    def _ordered(self, *pairs: tuple[str, str]) -> None:
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})")


class ElasticSettings(EffectSettings):
    alpha: float = Field(
        2.0, ge=0, le=10, description="Largest displacement of a pixel, in pixels (the distortion's strength)."
    )
    sigma: float = Field(
        12.0,
        ge=4,
        le=64,
        description="Smoothness: the size of the distorted regions, in pixels (small: wobbly strokes).",
    )


class StrokeSettings(EffectSettings):
    max_pixels: int = Field(
        1, ge=1, le=4, description="Largest change of stroke width, in pixels; each image draws 1 to this."
    )
    direction: Literal["both", "thicken", "thin"] = Field(
        "both", description="Thicken the strokes, thin them (thin strokes may vanish), or either at random."
    )


class InkSettings(EffectSettings):
    level_min: float = Field(
        0.6, ge=0.2, le=1.2, description="Lowest ink level of a word: 1 is as drawn, 0.5 half as dark."
    )
    level_max: float = Field(1.0, ge=0.2, le=1.2, description="Highest ink level of a word (over 1: darker).")
    pressure: float = Field(
        0.4,
        ge=0,
        le=0.9,
        description="Largest fading along the word where the pen presses less (0: even ink, 0.5: down to half).",
    )
    pressure_scale: float = Field(
        2.0,
        ge=0.25,
        le=10,
        description="Length of a pressure swell along the word, in multiples of the image height.",
    )
    color: float = Field(
        0.15, ge=0, le=0.6, description="Ink colour cast of RGB images (0: grey ink); grayscale images ignore it."
    )

    @model_validator(mode="after")
    def _range(self) -> InkSettings:
        self._ordered(("level_min", "level_max"))
        return self


class PaperSettings(EffectSettings):
    noise: float = Field(
        6.0, ge=0, le=40, description="Largest standard deviation of the grain noise, in grey levels (0-255)."
    )
    gradient: float = Field(
        0.15,
        ge=0,
        le=0.6,
        description="Largest lighting falloff across the image in a random direction (0.2: one side 20% darker).",
    )
    lines_probability: float = Field(
        0.3, ge=0, le=1, description="Chance of one or two faint ruled lines across the image."
    )
    line_darkness: float = Field(
        0.2, ge=0, le=0.6, description="Largest darkness of a ruled line (0: invisible, 0.5: mid grey)."
    )
    show_through: float = Field(
        0.08,
        ge=0,
        le=0.4,
        description="Largest opacity of writing showing through from the back of the sheet (mirrored, blurred).",
    )


class BlurJpegSettings(EffectSettings):
    blur_radius_min: float = Field(0.3, ge=0, le=3, description="Smallest gaussian blur sigma, in pixels.")
    blur_radius_max: float = Field(
        1.0, ge=0, le=3, description="Largest gaussian blur sigma, in pixels (0 with min 0: no blur)."
    )
    jpeg_probability: float = Field(
        0.7, ge=0, le=1, description="Chance of JPEG compression after the blur (0: blur only)."
    )
    jpeg_quality_min: int = Field(30, ge=1, le=100, description="Lowest JPEG quality (1-100).")
    jpeg_quality_max: int = Field(90, ge=1, le=100, description="Highest JPEG quality (1-100).")

    @model_validator(mode="after")
    def _ranges(self) -> BlurJpegSettings:
        self._ordered(("blur_radius_min", "blur_radius_max"), ("jpeg_quality_min", "jpeg_quality_max"))
        return self


class PadCropSettings(EffectSettings):
    max_fraction: float = Field(
        0.15,
        ge=0,
        le=0.3,
        description="Largest padding or crop on each side, as a fraction of the image height.",
    )
    allow_crop: bool = Field(
        True, description="Sides may be cropped as well as padded, into blank margin only (off: padding only)."
    )


class CraftCropSettings(EffectSettings):
    spread: float = Field(
        1.0,
        ge=0,
        le=2,
        description="How far a crop's margins stray from the median crop's: 1 as measured, 0 every crop the median.",
    )


class GlyphJitterSettings(EffectSettings):
    """Per-glyph variation while trdg draws a word glyph by glyph (render only: it needs the glyphs, not pixels)."""

    baseline: float = Field(
        0.06, ge=0, le=0.3, description="Largest shift of a glyph off the baseline, as a fraction of the text height."
    )
    rotation: float = Field(4.0, ge=0, le=20, description="Largest rotation of a glyph, in degrees.")
    scale: float = Field(0.08, ge=0, le=0.3, description="Largest change of a glyph's size (0.1: 90% to 110%).")
    spacing: float = Field(
        0.05, ge=0, le=0.3, description="Largest change of the gap before a glyph, as a fraction of the font size."
    )


class EffectsSettings(BaseModel):
    """Every effect's settings; all are disabled by default."""

    model_config = ConfigDict(extra="forbid")

    elastic: ElasticSettings = Field(
        default_factory=ElasticSettings, description="Elastic distortion: a smooth random warp of the strokes."
    )
    stroke: StrokeSettings = Field(
        default_factory=StrokeSettings, description="Stroke width: thicker or thinner pen strokes."
    )
    ink: InkSettings = Field(
        default_factory=InkSettings, description="Ink level and pen pressure: lighter words, fading along a word."
    )
    paper: PaperSettings = Field(
        default_factory=PaperSettings,
        description="Paper: grain noise, uneven lighting, faint ruled lines, show-through from the back.",
    )
    blur_jpeg: BlurJpegSettings = Field(
        default_factory=BlurJpegSettings, description="Camera and scanner: gaussian blur and JPEG artifacts."
    )
    pad_crop: PadCropSettings = Field(
        default_factory=PadCropSettings, description="Framing: random padding or crop on each side."
    )
    craft_crop: CraftCropSettings = Field(
        default_factory=CraftCropSettings,
        description="Framing as EasyOCR's detector frames a word: the image cut to its ink plus the margins of a "
        "crop readtext made (synth/data/craft_margins.json, measured by bench/craft_margins.py).",
    )

    def active(self) -> bool:
        """Whether any effect can change an image."""
        return bool(self.names_on())

    def names_on(self) -> list[str]:
        """The effects that can change an image, in ORDER."""
        return [name for name in ORDER if getattr(self, name).on]

    @classmethod
    def all_on(cls, probability: float | None = None) -> EffectsSettings:
        """Every effect enabled at its default (moderate) strength; probability overrides each effect's own."""
        data: dict[str, Any] = {name: {"enabled": True} for name in ORDER}
        if probability is not None:
            for d in data.values():
                d["probability"] = probability
        return cls.model_validate(data)
