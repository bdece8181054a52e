"""Character sets. The index order is part of the model: index i+1 of the CTC head is character i."""

from __future__ import annotations

import hashlib
import os
import unicodedata

from hwocr import memo
from hwocr.errors import HwocrError

_HERE = os.path.dirname(__file__)
# EasyOCR 1.7.2's config.py `characters` of each model, in its order.
BUILTIN = {name: os.path.join(_HERE, f"{name}.txt") for name in ("korean_g2", "english_g2")}


def load_charset(name_or_path: str = "korean_g2") -> str:
    """A built-in set by name, or a UTF-8 file holding the characters on one line (no newline)."""
    path = BUILTIN.get(name_or_path, name_or_path)
    try:
        return _read(path)  # a file edited in place is read again
    except FileNotFoundError:
        raise HwocrError(f"character set {name_or_path!r}: no such built-in set or file") from None


def charset_digest(name_or_path: str) -> str:
    """The set's content, as cache keys see it: editing a charset file changes it, renaming one does not."""
    return hashlib.sha256(load_charset(name_or_path).encode("utf-8")).hexdigest()


@memo.by_file(maxsize=8)
def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        chars = f.read()
    # The set may start with a space: strip only the line end.
    chars = unicodedata.normalize("NFC", chars.rstrip("\r\n"))
    if len(set(chars)) != len(chars):
        dup = sorted({c for c in chars if chars.count(c) > 1})
        raise HwocrError(f"character set {path}: duplicate characters {''.join(dup)!r}")
    return chars
