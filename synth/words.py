"""Word lists: read, NFC-normalize, check against the character set, report every drop."""

from __future__ import annotations

import importlib.resources
import unicodedata
from collections import Counter

from hwocr import storage
from hwocr.errors import HwocrError
from synth.labels import label_problem

DATA = importlib.resources.files(__package__) / "data"
BUNDLED_WORDS = str(DATA / "words_ko.txt")
# render.words may name a bundled list (synth/data/WORDS.md)
WORD_SOURCES = {"seed": BUNDLED_WORDS, "frequency": str(DATA / "words_ko_freq.txt")}


def _decode(url: str, data: bytes) -> str:
    if not data.strip():
        raise HwocrError(f"word list {url} is empty")
    return storage.decode_text(data, f"word list {url}")


def read_words(url: str, charset: str, max_length: int = 25) -> tuple[list[str], dict]:
    """Unique NFC words usable with charset, in file order, and a report of what was dropped and why."""
    try:
        data = storage.read_bytes(url)
    except FileNotFoundError:
        raise HwocrError(f"word list {url} does not exist (render.words: a UTF-8 file, one word a line)") from None
    except IsADirectoryError:
        raise HwocrError(f"word list {url} is a folder; render.words names a file, one word a line") from None
    text = _decode(url, data)
    allowed = set(charset)
    words: list[str] = []
    seen: set[str] = set()
    dropped: Counter = Counter()
    unknown: Counter = Counter()
    examples: dict[str, list[str]] = {}
    lines = 0
    for raw in text.splitlines():
        word = unicodedata.normalize("NFC", raw.strip())
        if not word:
            continue
        lines += 1
        reason = label_problem(word, allowed, max_length) or ("duplicate" if word in seen else None)
        if reason == "out_of_charset":
            unknown.update(c for c in word if c not in allowed)
        if reason:
            dropped[reason] += 1
            ex = examples.setdefault(reason, [])
            if len(ex) < 5:
                ex.append(word)
            continue
        seen.add(word)
        words.append(word)
    report = {
        "file": url,
        "words": lines,
        "kept": len(words),
        "dropped": dict(dropped),
        "unknown_chars": dict(unknown.most_common(20)),
        "examples": examples,
    }
    if not words:
        shown = ", ".join(f"{c!r} x{n}" for c, n in unknown.most_common(10))
        why = f"; characters outside the set: {shown}" if shown else ""
        raise HwocrError(
            f"word list {url}: none of its {lines} words is usable "
            f"(dropped: {dict(dropped)}){why}"
        )
    return words, report
