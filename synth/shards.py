"""The render plan: every split's images over its fonts by weight, cut into shards whose keys come from what their
images depend on (synth/trdg_driver.py renders them).

Shard layout: <out>/shards/<split>/<key>/{images.tar, labels.tsv, manifest.json}; images.tar holds <index>.png
and gt.txt names them as <shard>/images.tar/<index>.png (one object per shard on S3, not thousands). Image j of a font
depends only on (settings, word list, font bytes, split, j), so a shard's key leaves out where it stops:
a longer shard serves any shorter request, and adding a font renders only that font's shards.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

from pydantic import BaseModel, NonNegativeInt, PositiveInt

from hwocr import hashing, storage
from hwocr.hashing import stage_key
from hwocr.layout import Layout
from synth import coverage, effects, trdg_driver
from synth.font_pool import largest_remainder
from synth.render_settings import RenderSettings

CODE_VERSION = hashing.code_version(trdg_driver.__file__, libraries=("trdg", "PIL", "cv2", "numpy"),
                                    data=(str(effects.CRAFT_MARGINS),))


class ShardSpec(BaseModel):
    """One render_shard call: a font, a split and an index range, with its content key and URL."""

    split: str
    font_path: str
    font_sha: str
    font_name: str
    covered: str
    first: tuple[str, ...] = ()  # the font's words for images 0, 1, ... (render.min_syllable_draws)
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


def plan_shards(settings: RenderSettings, fonts_by_split: dict[str, list[dict]], words: dict, layout: Layout,
                charset: str) -> list[ShardSpec]:
    """Split every split's images over its fonts (sorted by content hash) by weight, in chunks of count/shards.

    Each split's shards come in waves, every font's first shard, then every font's second, ...: the order the rows of
    gt.txt need them (index j of every font), so packing can follow rendering."""
    specs = []
    for split, n in settings.splits().items():
        wave_start = len(specs)
        pixels = settings.pixel_settings(split)
        fonts = sorted(fonts_by_split[split], key=lambda f: f["sha256"])
        chunk = max(math.ceil(n / settings.shards), settings.min_shard_images)
        counts = split_count(n, [f.get("weight", 1.0) for f in fonts])
        first = first_words(settings, words, fonts, counts, split, charset)
        for font, n_font in zip(fonts, counts, strict=True):
            for start in range(0, n_font, chunk):
                reads = {"pixels": pixels, "words": words["sha256"], "font": font["sha256"],
                         "covered": hashing.digest(font["covered"]), "split": split, "start": start}
                if first.get(font["sha256"]):  # absent otherwise: keys stay as they were
                    reads["first"] = hashing.digest("\n".join(first[font["sha256"]]))
                key = stage_key("render_shard", CODE_VERSION, reads)
                specs.append(ShardSpec(
                    split=split, font_path=font["path"], font_sha=font["sha256"],
                    font_name=font["name"], covered=font["covered"], first=tuple(first.get(font["sha256"], ())),
                    start=start, stop=min(start + chunk, n_font), reads=reads,
                    url=layout.shard(split, key), words_url=words["url"], settings=pixels,
                ))
        specs[wave_start:] = sorted(specs[wave_start:], key=lambda s: s.start)  # stable: fonts stay in hash order
    return specs


def first_words(settings: RenderSettings, words: dict, fonts: list[dict], counts: list[int], split: str,
                charset: str) -> dict[str, list[str]]:
    """Per font hash, the words its first images draw so that the split holds every syllable the word list uses
    render.min_syllable_draws times (render.train_syllable_draws in train), as far as the split has room."""
    draws = settings.syllable_draws(split)
    if not draws:
        return {}
    cover = coverage.covering_words(list(read_words(words["url"])), coverage.hangul(charset),
                                    draws)
    dealt, _ = coverage.deal(cover, [(f["sha256"], f["covered"], n) for f, n in zip(fonts, counts, strict=True)])
    return dealt


def font_counts(specs: list[ShardSpec], split: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in specs:
        if s.split == split:
            counts[s.font_sha] = max(counts.get(s.font_sha, 0), s.stop)
    return counts


@functools.lru_cache(maxsize=4)
def read_words(url: str) -> tuple[str, ...]:
    return tuple(storage.read_text(url).split("\n")[:-1])
