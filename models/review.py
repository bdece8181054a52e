"""Review: the words of a prelabelled folder (hwocr prelabel's Label.txt), read, and edited one at a time.

Each edit is saved at once and atomically (the file written beside, then renamed over Label.txt, under the folder's
lock: hwocr/locks.py), and carries what the editor saw of that word: when the word changed since (another tab,
another person), the edit is refused with a Conflict, never written over the other one. Labels are NFC-normalized
and checked against the character set as they are saved; the character outside it is named.
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import asdict, dataclass

from hwocr import storage
from hwocr.errors import HwocrError
from hwocr.locks import held
from models.charset import load_charset
from models.prelabeling import LABEL_FILE, SUMMARY_FILE
from models.sources import page_items

STATUSES = ("predicted", "reviewed", "rejected")


class Conflict(HwocrError):
    """The word changed since the editor read it."""


@dataclass(frozen=True)
class Word:
    id: str  # "<line>:<index>": its place in Label.txt
    image: str  # the page (or crop) path as Label.txt names it
    transcription: str
    confidence: float | None
    status: str
    crop: str | None
    points: list

    def seen(self) -> dict:
        """What an editor saw of the word, to send back with an edit."""
        return {"transcription": self.transcription, "status": self.status}


def _rows(folder: str) -> list[tuple[str, list[dict]]]:
    path = os.path.join(folder, LABEL_FILE)
    try:
        text = open(path, encoding="utf-8").read()
    except FileNotFoundError:
        raise HwocrError(f"{folder}: no {LABEL_FILE} (hwocr prelabel writes one)") from None
    except UnicodeDecodeError:
        raise HwocrError(f"{path}: not UTF-8") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        image, tab, words = line.partition("\t")
        where = f"{path} line {n}"
        if not tab:
            raise HwocrError(f"{where}: expected image<TAB>[words as JSON]")
        words = page_items(where, words, "words")
        for k, w in enumerate(words, 1):
            if not isinstance(w, dict) or not isinstance(w.get("transcription"), str) or "points" not in w:
                raise HwocrError(f"{where} word {k}: expected {{\"transcription\": text, \"points\", ...}}")
            if w.get("status", "reviewed") not in STATUSES:
                raise HwocrError(f"{where} word {k}: status {w.get('status')!r} is not one of {', '.join(STATUSES)}")
        rows.append((image, words))
    return rows


def load(folder: str) -> list[Word]:
    """Every word of the folder, in Label.txt's order; a file edited by hand into another shape is an error naming
    its line."""
    return [Word(f"{n}:{k}", image, w["transcription"], w.get("confidence"), w.get("status", "reviewed"),
                 w.get("crop"), w["points"])
            for n, (image, words) in enumerate(_rows(folder)) for k, w in enumerate(words)]


def charset_of(folder: str, default: str = "korean_g2") -> str:
    """The characters a label may hold: the model's that prelabelled the folder (prelabel.json), else `default`."""
    try:
        with open(os.path.join(folder, SUMMARY_FILE), encoding="utf-8") as f:
            charset = json.load(f).get("charset")
    except FileNotFoundError:
        charset = None
    except (ValueError, AttributeError):
        raise HwocrError(f"{os.path.join(folder, SUMMARY_FILE)}: not the JSON object prelabel writes") from None
    return charset if isinstance(charset, str) and charset else load_charset(default)


def file_in(folder: str, rel: str) -> str | None:
    """A path Label.txt names (a crop, or a page as PPOCRLabel names it: <folder>/<file>, the folder's name when it
    was written) as a path inside the folder; None when it leaves the folder or is not there."""
    base = os.path.realpath(folder)
    rel = rel.replace("\\", "/")
    for candidate in (rel, rel.partition("/")[2]):
        real = os.path.realpath(os.path.join(base, candidate))
        if real.startswith(base + os.sep) and os.path.isfile(real):
            return os.path.relpath(real, base)
    return None


def check_label(text: str, charset: str) -> str:
    """The label NFC-normalized; an error naming the first character outside the set."""
    text = unicodedata.normalize("NFC", text.strip())
    allowed = set(charset)
    for c in text:
        if c not in allowed and not c.isspace():
            raise HwocrError(f"{c!r} (U+{ord(c):04X}) is not in the model's character set")
    return text


def save(folder: str, word_id: str, seen: dict, transcription: str, status: str, charset: str) -> Word:
    """Set one word's transcription and status, if it is still what the editor saw (`seen`: Word.seen()); the
    word as saved. A rejected word keeps its transcription."""
    if status not in STATUSES:
        raise HwocrError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    if status != "rejected":
        transcription = check_label(transcription, charset)
        if not transcription:
            raise HwocrError("an empty label: type the word, or mark it unreadable")
    with held(f"review {os.path.realpath(folder)}"):
        rows = _rows(folder)
        try:
            n, k = (int(v) for v in word_id.split(":"))
            word = rows[n][1][k]
        except (ValueError, IndexError):
            raise Conflict(f"word {word_id} is not in {LABEL_FILE} any more: reload") from None
        now = {"transcription": word["transcription"], "status": word.get("status", "reviewed")}
        if now != {"transcription": seen.get("transcription"), "status": seen.get("status")}:
            raise Conflict(f"word {word_id} was changed elsewhere since this page read it (now "
                           f"{now['transcription']!r}, {now['status']}): reload to see it")
        if status != "rejected":
            word["transcription"] = transcription
        word["status"] = status
        storage.write_text(os.path.join(folder, LABEL_FILE),  # written beside, then renamed over it
                           "".join(f"{image}\t{json.dumps(words, ensure_ascii=False)}\n" for image, words in rows))
    return Word(word_id, rows[n][0], word["transcription"], word.get("confidence"), word["status"],
                word.get("crop"), word["points"])


def as_json(word: Word) -> dict:
    return asdict(word)
