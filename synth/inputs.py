"""The user's inputs, checked and described: the word list and the fonts. Plain Python, so that the CLI checks them
before Prefect starts and the stages (tasks/prepare.py) run the same checks for deployments and the UI."""

from __future__ import annotations

from hwocr import storage
from hwocr.errors import HwocrError
from synth.coverage import hangul, syllable_coverage
from synth.font_pool import check_held_out_families, select_pool
from synth.fonts import discover_fonts, survey
from synth.render_settings import RenderSettings
from synth.text import generate
from synth.words import WORD_SOURCES, read_words


def word_list(settings: RenderSettings, charset: str) -> tuple[str, list[str], dict]:
    """(its URL, the normalized and filtered words with the generated forms after them, the report of what was
    dropped, generated and covered); charset: the characters of settings.charset."""
    url = WORD_SOURCES.get(settings.words or "seed", settings.words)
    words, report = read_words(url, charset, settings.batch_max_length)
    extra, by_kind = generate(settings.generated, len(words), settings.seed, set(charset),
                              settings.batch_max_length, set(words))
    words += extra
    report["generated"] = dict(by_kind)
    report["coverage"] = syllable_coverage(words, hangul(charset))
    return url, words, report


def font_sources(settings: RenderSettings) -> tuple[list[str], list[str], dict[str, float]]:
    """(training font URLs, held-out font URLs, weight by URL): from render.pool, else fonts and test_fonts."""
    if settings.pool is None:
        return discover_fonts(settings.fonts), discover_fonts(settings.test_fonts) if settings.test_count else [], {}
    pool = select_pool(settings.pool)
    if settings.test_count and not pool["test"]:
        raise HwocrError(f"render.test_count is {settings.test_count} but no held-out font is left: "
                         f"render.pool.held_out_groups {settings.pool.held_out_groups} draw no image (weight 0?)")
    weights = {p.path: p.effective_weight for p in pool["train"] + pool["test"]}
    return [p.path for p in pool["train"]], [p.path for p in pool["test"]] if settings.test_count else [], weights


def font_survey(settings: RenderSettings, charset: str, used: set[str]) -> dict:
    """Hash every font, check what it really draws of the characters `used`, and apply settings.font_missing:
    {"fonts", "test_fonts", "regression_fonts", "skipped"}."""
    train_urls, test_urls, weights = font_sources(settings)
    what = "render.pool" if settings.pool is not None else f"render.fonts {settings.fonts}"
    kept, skipped = survey(train_urls, settings.font_missing, charset, used, what)
    held_out: list[dict] = []
    if settings.test_count:
        what = ("render.pool held-out groups" if settings.pool is not None
                else f"render.test_fonts {settings.test_fonts}")
        held_out, more = survey(test_urls, settings.font_missing, charset, used, what)
        skipped += more
        check_held_out_families(kept, held_out, settings.pool.catalogue if settings.pool is not None else None)
    regression: list[dict] = []
    if settings.regression_count:
        regression, more = survey(discover_fonts(settings.regression_fonts), settings.font_missing, charset, used,
                                   f"render.regression_fonts {settings.regression_fonts}")
        skipped += more
    for f in kept + held_out:
        f["weight"] = weights.get(f["url"], 1.0)
    return {"fonts": kept, "test_fonts": held_out, "regression_fonts": regression, "skipped": skipped}


def check_inputs(settings: RenderSettings, charset: str) -> None:
    """Every check of the word list and the fonts, raising HwocrError on the first problem."""
    _, words, _ = word_list(settings, charset)
    font_survey(settings, charset, set("".join(words)))


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def check_space(settings: RenderSettings, out: str, workers: int) -> dict:
    """The plan's estimate (images, bytes, seconds); refused, with the numbers, when the disk under out cannot hold
    it. What out already holds counts as space: a re-run reuses its shards."""
    plan = settings.estimate(workers)
    free = storage.free_bytes(out)
    if free is not None:
        needed = plan["bytes"] - storage.used_bytes(out)
        if needed > free:
            raise HwocrError(
                f"the plan needs about {_size(plan['bytes'])} under {out} ({plan['images']:,} images of "
                f"{settings.height} px, shards and LMDB; about {plan['seconds'] / 3600:.1f} h to render) but its disk "
                f"has {_size(free)} free: lower render.count (or the other counts), or write elsewhere (--out)")
    return plan


def describe_plan(plan: dict) -> str:
    return (f"plan: {plan['images']:,} images, about {_size(plan['bytes'])} on disk, about "
            f"{plan['seconds'] / 60:.0f} min to render")


def describe_words(url: str, report: dict) -> str:
    cov = report["coverage"]
    return (f"words: {report['kept']} from {url}, {sum(report['generated'].values())} generated "
            f"{report['generated'] or ''}; {cov['covered']} of {cov['syllables']} syllables used"
            + (f" (never: {cov['missing']})" if cov["missing"] else ""))


def describe_fonts(fonts: dict) -> list[str]:
    """A line a font of font_survey's: its role, file and the words it skips."""
    lines = []
    for f in fonts["fonts"] + fonts["test_fonts"] + fonts["regression_fonts"]:
        role = ("held out" if f in fonts["test_fonts"] else "regression" if f in fonts["regression_fonts"]
                else "train/val")
        lines.append(f"font {f['name']} ({role}): {f['url']}"
                     + (f" (skips words using {f['missing'][:20]!r})" if f["missing"] else ""))
    return lines
