"""The renderer's settings: what to render and how (trdg's options, the effects, the fonts or the font pool).
Plain pydantic with no Prefect or torch, so that the CLI checks a config in about a second."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from synth.effect_settings import EffectsSettings, GlyphJitterSettings
from synth.font_pool import FontPoolSettings
from synth.fonts import DEFAULT_FONTS, PRINT_FONTS
from synth.text import GeneratedSettings

# Images of one split at the most: about 100 GB of shards and LMDB at the seed's size, days of rendering on a CPU.
MAX_IMAGES = 10_000_000
# One image's bytes on disk, its shard copy and its LMDB copy together, per square pixel of height: 8.3 KB at 64 px
# on the quick preset (grayscale PNG: 3.9 KB in the shard, 4.4 KB in the LMDB).
BYTES_PER_HEIGHT_SQUARED = 2.0
IMAGES_PER_SECOND_PER_WORKER = 600  # bench/RESULTS.md, 2026-12-02: 1,194 images/s on 2 processes at 80 px


class RenderSettings(BaseModel):
    """What to render and how; the trdg options of the seed's table keep trdg's meaning."""

    model_config = ConfigDict(extra="forbid")

    fonts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FONTS),
        description="Fonts (trdg -ft/-fd): a folder, a glob, or a list of .ttf/.otf/.ttc files or URLs.",
    )
    test_fonts: list[str] = Field(
        default_factory=list,
        description="Held-out fonts for a 'test' split, never used for train or val (a folder, glob or list).",
    )
    test_count: NonNegativeInt = Field(0, le=MAX_IMAGES,
                                       description="Test images to render with test_fonts (0: no test split).")
    regression_count: NonNegativeInt = Field(
        0, le=MAX_IMAGES, description="Images of a 'regression' split: the word list in plain print faces, scored "
        "before and after fine-tuning to show what the model forgot (0: no regression split)."
    )
    regression_fonts: list[str] = Field(
        default_factory=lambda: list(PRINT_FONTS),
        description="Print fonts of the regression split (a folder, glob or list). A font pool with print_ratio > 0 "
        "may train on the same faces: the split then asks whether print is still read, not whether unseen faces are.",
    )
    words: str | None = Field(
        None, description="Word list (trdg -i): UTF-8, one word a line, or a bundled one: seed (the default: the "
        "seed's mix of numbers, English and dictionary words) or frequency (the 20,000 most frequent Korean words, "
        "offensive ones left out); synth/data/WORDS.md describes both."
    )
    min_syllable_draws: NonNegativeInt = Field(
        0, le=100, description="Draw every Hangul syllable the words use at least this many times in each split "
        "(0: words at random only): each font first draws its share of words chosen to do it, short ones first."
    )
    train_syllable_draws: NonNegativeInt | None = Field(
        None, le=100, description="The training split's own minimum (None: min_syllable_draws): rare syllables drawn "
        "more often where the model learns them, while validation and test keep the text people write."
    )
    generated: GeneratedSettings = Field(
        default_factory=GeneratedSettings,
        description="Generated forms added to the word list (numbers with counters, dates, times, prices, phone "
        "numbers, Latin and mixed tokens): share of the entries, and a weight per kind. Off by default.",
    )
    count: PositiveInt = Field(100_000, le=MAX_IMAGES, description="Training images to render (trdg -c).")
    val_count: PositiveInt = Field(1_000, le=MAX_IMAGES, description="Validation images to render.")
    seed: int = Field(1111, description="Every image is seeded from (seed, split, font, index).")
    shards: PositiveInt = Field(
        32, description="Shards per split: images per shard = count / shards, at least min_shard_images."
    )
    min_shard_images: PositiveInt = Field(256, description="Smallest shard, so that small splits are not over-split.")
    workers: NonNegativeInt = Field(0, description="Render processes (trdg -t); 0 = all cores.")
    language: Literal["ko"] = Field("ko", description="Language (trdg -l).")
    charset: str = Field("korean_g2", description="Character set: a built-in name or a file.")
    batch_max_length: PositiveInt = Field(25, description="Longest word kept, in characters.")
    height: int = Field(80, ge=8, le=512, description="Image height in pixels (trdg -f).")
    background: Literal[0, 1, 2] = Field(
        1, description="Background (trdg -b): 0 gaussian noise, 1 plain white, 2 quasicrystal."
    )
    margins: tuple[NonNegativeInt, NonNegativeInt, NonNegativeInt, NonNegativeInt] = Field(
        (0, 0, 0, 0), description="Margins top, left, bottom, right in pixels (trdg -m)."
    )
    skew_angle: int = Field(15, ge=0, le=90, description="Skew angle in degrees (trdg -k).")
    random_skew: bool = Field(True, description="Draw the skew uniformly in [-angle, angle] (trdg -rk).")
    blur: NonNegativeInt = Field(0, description="Gaussian blur radius (trdg -bl).")
    random_blur: bool = Field(False, description="Draw the blur radius in [0, blur] (trdg -rbl).")
    distortion: Literal[0, 1, 2, 3] = Field(0, description="Distortion (trdg -d): 0 none, 1 sine, 2 cosine, 3 random.")
    distortion_orientation: Literal[0, 1, 2] = Field(
        0, description="Distortion orientation (trdg -do): 0 vertical, 1 horizontal, 2 both."
    )
    alignment: Literal[0, 1, 2] = Field(1, description="Text alignment (trdg -al): 0 left, 1 center, 2 right.")
    text_color: str = Field("#282828", description="Text colour, or a range 'c1,c2' (trdg -tc).")
    space_width: float = Field(1.0, gt=0, description="Space width as a multiple of the font's (trdg -sw).")
    character_spacing: NonNegativeInt = Field(0, description="Extra pixels between characters (trdg -cs).")
    fit: bool = Field(False, description="Crop tightly around the text (trdg -fi).")
    stroke_width: NonNegativeInt = Field(0, description="Outline width (trdg -stw).")
    stroke_fill: str = Field("#282828", description="Outline colour (trdg -stf).")
    grayscale: bool = Field(True, description="Save single-channel images (the model reads grayscale).")
    image_format: Literal["png", "jpg"] = Field("png", description="Image encoding (trdg -e).")
    jpeg_quality: int = Field(95, ge=1, le=100, description="JPEG quality when image_format is jpg.")
    png_compress_level: int = Field(6, ge=0, le=9, description="PNG zlib level: 1 is faster, 9 is smaller.")
    effects: EffectsSettings = Field(
        default_factory=EffectsSettings,
        description="Handwriting realism applied after trdg draws a word, each effect seeded per image; all off "
        "by default (the seed's plain look).",
    )
    glyph_jitter: GlyphJitterSettings = Field(
        default_factory=GlyphJitterSettings,
        description="Per-glyph jitter while trdg draws a word glyph by glyph: baseline, rotation, size and "
        "spacing of each glyph; off by default.",
    )
    pool: FontPoolSettings | None = Field(
        None,
        description="Take fonts from the catalogue of Korean fonts from Debian and npm packages (tagged handwriting "
        "or print, weighted, whole families held out for the test split) instead of fonts and test_fonts.",
    )
    font_missing: Literal["error", "skip_font", "skip_words"] = Field(
        "skip_words",
        description="A font that cannot draw some characters of the word list: stop with an error, "
        "leave the font out, or keep it and draw only the words it covers.",
    )

    @field_validator("words")
    @classmethod
    def _words(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("is empty: name a word list (a file or URL, or seed, or frequency), or leave it unset for "
                             "the default")
        return v

    @field_validator("fonts", "test_fonts", "regression_fonts", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _test_split(self) -> RenderSettings:
        # By value, not by fields set: Prefect validates a dumped config, where every field is set.
        if self.pool is not None and (self.fonts != list(DEFAULT_FONTS) or self.test_fonts):
            raise ValueError("pool replaces fonts and test_fonts: set one or the other")
        held_out = self.pool.held_out_groups if self.pool is not None else self.test_fonts
        if self.test_count and not held_out:
            raise ValueError("test_count needs test_fonts (or pool.held_out_groups): the test split is rendered "
                             "with held-out fonts only")
        return self

    def splits(self) -> dict[str, int]:
        return ({"train": self.count, "val": self.val_count} | ({"test": self.test_count} if self.test_count else {})
                | ({"regression": self.regression_count} if self.regression_count else {}))

    def syllable_draws(self, split: str) -> int:
        if split == "train" and self.train_syllable_draws is not None:
            return self.train_syllable_draws
        return self.min_syllable_draws

    def check_machine(self, cores: int) -> None:
        """A render process count this machine cannot run is refused before any starts."""
        from hwocr.errors import HwocrError

        if self.workers > 4 * cores:
            raise HwocrError(f"render.workers {self.workers:,}: each is a process with its own fonts and trdg, and "
                             f"this machine has {cores} cores; at most {4 * cores} (0: one a core)")

    def estimate(self, workers: int) -> dict:
        """The plan's images, its bytes on disk (shards and LMDB) and its render time on `workers` processes."""
        images = sum(self.splits().values())
        return {"images": images, "bytes": int(images * self.height ** 2 * BYTES_PER_HEIGHT_SQUARED),
                "seconds": images / (IMAGES_PER_SECOND_PER_WORKER * max(1, workers))}

    def pixel_settings(self, split: str | None = None) -> dict:
        """The settings that change image bytes (fonts and words, the generated forms among them, enter keys by
        content hash). The test and regression splits are always drawn plain: every variant of the effects is then
        scored on the same images."""
        skip = {"fonts", "test_fonts", "test_count", "words", "count", "val_count", "shards", "min_shard_images",
                "workers", "font_missing", "charset", "batch_max_length", "language", "pool", "regression_count",
                "regression_fonts", "generated", "min_syllable_draws", "train_syllable_draws"}
        plain = split in ("test", "regression")
        if plain or not self.effects.active():  # keys and bytes of plain renders stay as they were
            skip.add("effects")
        if plain or not self.glyph_jitter.on:
            skip.add("glyph_jitter")
        return self.model_dump(mode="json", exclude=skip)
