"""render_shard: trdg images for one font and one index range, written atomically as a shard folder.

Shard layout: <out>/shards/<split>/<key>/{images.tar, labels.tsv, manifest.json}; images.tar holds <index>.png
and gt.txt names them as <shard>/images.tar/<index>.png (one object per shard on S3, not thousands). Image j of a font
depends only on (settings, word list, font bytes, split, j), so a shard's key leaves out where it stops:
a longer shard serves any shorter request, and adding a font renders only that font's shards.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import multiprocessing
import os
import threading
from fractions import Fraction
from typing import Literal

from prefect.tasks import exponential_backoff
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from hwocr import hashing, storage
from hwocr.errors import TransientError
from hwocr.layout import Layout
from synth import trdg_driver
from synth.effects import EffectsSettings, GlyphJitterSettings
from synth.font_pool import FontPoolSettings, largest_remainder
from synth.fonts import DEFAULT_FONTS, PRINT_FONTS
from tasks.stage import StageResult, retry_transient, stage, stage_key

CODE_VERSION = hashing.code_version(trdg_driver.__file__, libraries=("trdg", "PIL", "cv2", "numpy"))
PIECE_IMAGES = 256


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
    test_count: NonNegativeInt = Field(0, description="Test images to render with test_fonts (0: no test split).")
    regression_count: NonNegativeInt = Field(
        0, description="Images of a 'regression' split: the word list in plain print faces, scored before and after "
        "fine-tuning to show what the model forgot (0: no regression split)."
    )
    regression_fonts: list[str] = Field(
        default_factory=lambda: list(PRINT_FONTS),
        description="Print fonts of the regression split (a folder, glob or list). A font pool with print_ratio > 0 "
        "may train on the same faces: the split then asks whether print is still read, not whether unseen faces are.",
    )
    words: str | None = Field(
        None, description="Word list (trdg -i): UTF-8, one word a line. Empty: the bundled Korean list."
    )
    count: PositiveInt = Field(100_000, description="Training images to render (trdg -c).")
    val_count: PositiveInt = Field(1_000, description="Validation images to render.")
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
        description="Take fonts from the catalogue of Debian's Korean fonts (tagged handwriting or print, weighted, "
        "whole families held out for the test split) instead of fonts and test_fonts.",
    )
    font_missing: Literal["error", "skip_font", "skip_words"] = Field(
        "skip_words",
        description="A font that cannot draw some characters of the word list: stop with an error, "
        "leave the font out, or keep it and draw only the words it covers.",
    )

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

    def pixel_settings(self, split: str | None = None) -> dict:
        """The settings that change image bytes (fonts and words enter keys by content hash). The test and
        regression splits are always drawn plain: every variant of the effects is then scored on the same images."""
        skip = {"fonts", "test_fonts", "test_count", "words", "count", "val_count", "shards", "min_shard_images",
                "workers", "font_missing", "charset", "batch_max_length", "language", "pool", "regression_count",
                "regression_fonts"}
        plain = split in ("test", "regression")
        if plain or not self.effects.active():  # keys and bytes of plain renders stay as they were
            skip.add("effects")
        if plain or not self.glyph_jitter.on:
            skip.add("glyph_jitter")
        return self.model_dump(mode="json", exclude=skip)


class ShardSpec(BaseModel):
    """One render_shard call: a font, a split and an index range, with its content key and URL."""

    split: str
    font_path: str
    font_sha: str
    font_name: str
    covered: str
    start: NonNegativeInt
    stop: PositiveInt
    url: str
    words_url: str
    settings: dict
    reads: dict  # what its images depend on (not where the shard stops)

    @property
    def key(self) -> str:
        return stage_key("render_shard", CODE_VERSION, self.reads)


def split_count(n: int, weights: list[float]) -> list[int]:
    """n images over fonts in proportion to weight: largest remainder, ties to the earlier font (equal weights
    give the first n % k fonts one more)."""
    return largest_remainder(n, [Fraction(w) for w in weights], [""] * len(weights))


def plan_shards(settings: RenderSettings, fonts_by_split: dict[str, list[dict]], words: dict,
                layout: Layout) -> list[ShardSpec]:
    """Split every split's images over its fonts (sorted by content hash) by weight, in chunks of count/shards."""
    specs = []
    for split, n in settings.splits().items():
        pixels = settings.pixel_settings(split)
        fonts = sorted(fonts_by_split[split], key=lambda f: f["sha256"])
        chunk = max(math.ceil(n / settings.shards), settings.min_shard_images)
        for font, n_font in zip(fonts, split_count(n, [f.get("weight", 1.0) for f in fonts]), strict=True):
            for start in range(0, n_font, chunk):
                reads = {"pixels": pixels, "words": words["sha256"], "font": font["sha256"],
                         "covered": hashing.digest(font["covered"]), "split": split, "start": start}
                key = stage_key("render_shard", CODE_VERSION, reads)
                specs.append(ShardSpec(
                    split=split, font_path=font["path"], font_sha=font["sha256"],
                    font_name=font["name"], covered=font["covered"], start=start,
                    stop=min(start + chunk, n_font), reads=reads,
                    url=layout.shard(split, key), words_url=words["url"], settings=pixels,
                ))
    return specs


def font_counts(specs: list[ShardSpec], split: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in specs:
        if s.split == split:
            counts[s.font_sha] = max(counts.get(s.font_sha, 0), s.stop)
    return counts


# --- worker processes -------------------------------------------------------------------------------
# Prefect tasks run on threads and feed one process pool: the thread runner alone is held by the GIL,
# and process task runners boot a Prefect server per worker in ephemeral mode.

class _Pool:
    def __init__(self):
        self.lock = threading.Lock()
        self.executor: concurrent.futures.ProcessPoolExecutor | None = None
        self.size = 0
        self.queue = None
        self.listener: threading.Thread | None = None
        self.on_total = lambda n: None
        self.on_advance = lambda n: None

    def get(self, workers: int) -> concurrent.futures.ProcessPoolExecutor:
        with self.lock:
            ex = self.executor
            if ex is None or getattr(ex, "_broken", False) or self.size != workers:
                self._shutdown_locked()
                ctx = multiprocessing.get_context("spawn")
                self.queue = ctx.SimpleQueue()
                self.executor = concurrent.futures.ProcessPoolExecutor(
                    max_workers=workers, mp_context=ctx,
                    initializer=trdg_driver.init_worker, initargs=(self.queue,),
                )
                self.size = workers
                self.listener = threading.Thread(target=self._listen, args=(self.queue,), daemon=True)
                self.listener.start()
            return self.executor

    def warm(self, workers: int) -> None:
        """Start the worker processes now, so their imports overlap with planning."""
        ex = self.get(workers)
        for _ in range(workers):
            ex.submit(os.getpid)

    def _listen(self, queue) -> None:
        while True:
            n = queue.get()
            if n is None:
                return
            self.on_advance(n)

    def _shutdown_locked(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
        if self.queue is not None:
            self.queue.put(None)
            self.listener.join(timeout=5)
            self.queue = None

    def shutdown(self) -> None:
        with self.lock:
            self._shutdown_locked()


POOL = _Pool()


# Flows call these rather than touch POOL: Dask ships a flow's function by value, with the globals it names, and
# POOL holds locks; module functions travel by reference.
def warm_pool(workers: int) -> None:
    POOL.warm(workers)


def shutdown_pool() -> None:
    POOL.shutdown()


def resolve_workers(settings: RenderSettings) -> int:
    return settings.workers or os.cpu_count() or 1


@functools.lru_cache(maxsize=4)
def _read_words(url: str) -> tuple[str, ...]:
    return tuple(storage.read_text(url).split("\n")[:-1])


class ShardResult(StageResult):
    """A rendered shard: the manifest written last in its folder."""

    url: str = ""
    split: str
    font_sha: str
    font_name: str = ""
    start: NonNegativeInt
    stop: PositiveInt
    counts: dict
    files: dict[str, str]

    def complete(self) -> bool:
        return bool(self.url) and storage.exists(storage.join(self.url, trdg_driver.ARCHIVE))


def _in_dask_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


def render_shard_fn(spec: ShardSpec, workers: int) -> ShardResult:
    with storage.staged_dir(spec.url) as tmp:
        job = trdg_driver.RenderJob(
            settings=spec.settings, words=_read_words(spec.words_url), covered=spec.covered, split=spec.split,
            font_sha=spec.font_sha, font_path=spec.font_path, start=spec.start, stop=spec.stop, key=spec.key,
            dir=tmp,
        )
        if _in_dask_worker():  # the cluster is the process pool: render here
            manifest = trdg_driver.write_manifest(job, [trdg_driver.render_range(job)])
            return ShardResult(url=spec.url, font_name=spec.font_name, **manifest)
        POOL.on_total(spec.stop - spec.start)
        # Pieces of a few hundred images keep every core busy to the end, whatever each font costs.
        step = max(PIECE_IMAGES, math.ceil((spec.stop - spec.start) / 4))
        try:
            pool = POOL.get(workers)
            parts = [pool.submit(trdg_driver.render_range,
                                 job.model_copy(update={"start": a, "stop": min(a + step, spec.stop)}))
                     for a in range(spec.start, spec.stop, step)]
            manifest = trdg_driver.write_manifest(job, [p.result() for p in parts])
        except concurrent.futures.process.BrokenProcessPool as e:
            raise TransientError(f"render worker died while rendering {spec.url}: {e}") from e
    return ShardResult(url=spec.url, font_name=spec.font_name, **manifest)


render_shard = stage(
    name="render_shard", code=CODE_VERSION, result=ShardResult,
    key=lambda spec, workers: spec.reads,
    marker=lambda key, spec, workers: storage.join(spec.url, "manifest.json"),
    # Image j of a font does not depend on where its shard stops: a longer shard serves a shorter request.
    covers=lambda done, spec, workers: done.stop >= spec.stop,
    task_run_name="render {spec.split} {spec.font_name} [{spec.start}:{spec.stop}]",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_transient,
)(render_shard_fn)
