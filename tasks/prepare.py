"""The stages that read the user's inputs: the word list and the fonts (their content hashes enter every key); the
checks themselves are synth/inputs.py's."""

from __future__ import annotations

from prefect import get_run_logger, task

from hwocr import hashing, storage
from hwocr.layout import Layout
from models.charset import load_charset
from synth.inputs import font_survey, word_list
from synth.render_settings import RenderSettings


@task(name="prepare_words")
def prepare_words(settings: RenderSettings, layout: Layout) -> dict:
    """Read, normalize and filter the word list; store the clean list content-addressed (Layout.words)."""
    url, words, report = word_list(settings, load_charset(settings.charset))
    text = "".join(w + "\n" for w in words)
    sha = hashing.sha256_bytes(text.encode("utf-8"))
    words_url = layout.words(sha)
    if not storage.exists(words_url):
        storage.write_text(words_url, text)
    log = get_run_logger()
    cov = report["coverage"]
    log.info("words: %d from %s, %d generated %s; %d of %d syllables used%s", report["kept"], url,
             sum(report["generated"].values()), report["generated"] or "", cov["covered"], cov["syllables"],
             f" (never: {cov['missing']})" if cov["missing"] else "")
    if report["dropped"]:
        log.warning("word list %s: dropped %s; unknown characters %s", url, report["dropped"],
                                 report["unknown_chars"])
    return {"url": words_url, "sha256": sha, "count": len(words), "report": report}


@task(name="survey_fonts")
def survey_fonts(settings: RenderSettings, words: dict) -> dict:
    """Hash every font, check what it really draws, and apply settings.font_missing."""
    used = set(storage.read_text(words["url"]).replace("\n", ""))
    fonts = font_survey(settings, load_charset(settings.charset), used)
    log = get_run_logger()
    for f in fonts["fonts"] + fonts["test_fonts"] + fonts["regression_fonts"]:
        role = ("held out" if f in fonts["test_fonts"] else "regression" if f in fonts["regression_fonts"]
                else "train/val")
        log.info("font %s (%s): %s%s", f["name"], role, f["url"],
                 f" (skips words using {f['missing'][:20]!r})" if f["missing"] else "")
    for s in fonts["skipped"]:
        log.warning("font skipped: %s", s["reason"])
    return fonts
