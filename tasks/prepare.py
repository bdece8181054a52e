"""The stages that read the user's inputs: the word list and the fonts (their content hashes enter every key); the
checks themselves are synth/inputs.py's."""

from __future__ import annotations

from prefect import get_run_logger, task

from hwocr import hashing, storage
from hwocr.layout import Layout
from models.charset import load_charset
from synth.inputs import describe_fonts, describe_words, font_survey, word_list
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
    log.info(describe_words(url, report))
    if report["dropped"]:
        log.warning("word list %s: dropped %s; unknown characters %s", url, report["dropped"], report["unknown_chars"])
    return {"url": words_url, "sha256": sha, "count": len(words), "report": report}


@task(name="survey_fonts")
def survey_fonts(settings: RenderSettings, words: dict) -> dict:
    """Hash every font, check what it really draws, and apply settings.font_missing."""
    used = set(storage.read_text(words["url"]).replace("\n", ""))
    fonts = font_survey(settings, load_charset(settings.charset), used)
    log = get_run_logger()
    for line in describe_fonts(fonts):
        log.info(line)
    for s in fonts["skipped"]:
        log.warning("font skipped: %s", s["reason"])
    return fonts
