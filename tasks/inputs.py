"""The stages that read the user's inputs: the word list and the fonts (their content hashes enter every key)."""

from __future__ import annotations

from prefect import get_run_logger, task

from hwocr import hashing, storage
from hwocr.errors import HwocrError
from hwocr.layout import Layout
from models.charset import load_charset
from synth.font_pool import check_held_out_families, select_pool
from synth.fonts import discover_fonts, survey
from synth.words import BUNDLED_WORDS, read_words
from tasks.settings import RenderSettings


@task(name="prepare_words")
def prepare_words(settings: RenderSettings, layout: Layout) -> dict:
    """Read, normalize and filter the word list; store the clean list content-addressed (Layout.words)."""
    url = settings.words or BUNDLED_WORDS
    words, report = read_words(url, load_charset(settings.charset), settings.batch_max_length)
    text = "".join(w + "\n" for w in words)
    sha = hashing.sha256_bytes(text.encode("utf-8"))
    words_url = layout.words(sha)
    if not storage.exists(words_url):
        storage.write_text(words_url, text)
    if report["dropped"]:
        get_run_logger().warning("word list %s: dropped %s; unknown characters %s", url, report["dropped"],
                                 report["unknown_chars"])
    return {"url": words_url, "sha256": sha, "count": len(words), "report": report}


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


@task(name="survey_fonts")
def survey_fonts(settings: RenderSettings, words: dict) -> dict:
    """Hash every font, check what it really draws, and apply settings.font_missing."""
    charset = load_charset(settings.charset)
    used = set(storage.read_text(words["url"]).replace("\n", ""))
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
    log = get_run_logger()
    for f in kept + held_out + regression:
        role = "held out" if f in held_out else "regression" if f in regression else "train/val"
        log.info("font %s (%s): %s%s", f["name"], role, f["url"],
                 f" (skips words using {f['missing'][:20]!r})" if f["missing"] else "")
    for s in skipped:
        log.warning("font skipped: %s", s["reason"])
    return {"fonts": kept, "test_fonts": held_out, "regression_fonts": regression, "skipped": skipped}
