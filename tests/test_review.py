"""models/review.py: a prelabelled folder's words edited one at a time, each edit atomic and checked against what
the editor saw."""

import json
import os

import pytest

from hwocr.errors import HwocrError
from models.charset import load_charset
from models.review import Conflict, load, save

CHARSET = load_charset("korean_g2")


def folder(tmp_path):
    words = [[{"transcription": t, "points": [[0, 0], [9, 0], [9, 9], [0, 9]], "confidence": c,
               "status": "predicted", "crop": f"crops/p{n}-{k}.png"} for k, (t, c) in enumerate(page)]
             for n, page in enumerate([[("한글", 0.9), ("사랑", 0.2)], [("바다", 0.5)]])]
    text = "".join(f"review/p{n}.jpg\t{json.dumps(w, ensure_ascii=False)}\n" for n, w in enumerate(words))
    (tmp_path / "Label.txt").write_text(text, encoding="utf-8")
    return str(tmp_path)


def test_accept_correct_reject_are_saved_at_once_and_read_back(tmp_path):
    d = folder(tmp_path)
    first, second, third = load(d)
    assert [w.id for w in (first, second, third)] == ["0:0", "0:1", "1:0"]
    assert save(d, first.id, first.seen(), first.transcription, "reviewed", CHARSET).status == "reviewed"
    # Typed in decomposed jamo (as some keyboards send it): stored NFC.
    fixed = save(d, second.id, second.seen(), "\u1109\u1161\u1105\u1161\u11bc", "reviewed", CHARSET)
    assert fixed.transcription == "사랑" and fixed.status == "reviewed"
    assert save(d, third.id, third.seen(), "", "rejected", CHARSET).transcription == "바다"
    assert [(w.transcription, w.status) for w in load(d)] == [("한글", "reviewed"), ("사랑", "reviewed"),
                                                              ("바다", "rejected")]
    assert os.listdir(d) == ["Label.txt"]  # no temporary file left behind


def test_an_edit_made_elsewhere_is_never_overwritten(tmp_path):
    d = folder(tmp_path)
    tab_a, stale = load(d)[0], load(d)  # two tabs read the folder
    tab_b = stale[0]
    save(d, tab_a.id, tab_a.seen(), "한국", "reviewed", CHARSET)
    with pytest.raises(Conflict, match=r"word 0:0 was changed elsewhere since this page read it \(now '한국', "
                                       r"reviewed\): reload"):
        save(d, tab_b.id, tab_b.seen(), "한글", "reviewed", CHARSET)
    assert load(d)[0].transcription == "한국"
    # Another word from the stale tab is no conflict: only that word is written.
    other = stale[2]
    save(d, other.id, other.seen(), "바다", "reviewed", CHARSET)
    assert [(w.transcription, w.status) for w in load(d)][::2] == [("한국", "reviewed"), ("바다", "reviewed")]


def test_bad_labels_and_files_are_named(tmp_path):
    d = folder(tmp_path)
    w = load(d)[0]
    with pytest.raises(HwocrError, match=r"'Æ' \(U\+00C6\) is not in the model's character set"):
        save(d, w.id, w.seen(), "한Æ", "reviewed", CHARSET)
    with pytest.raises(HwocrError, match="an empty label"):
        save(d, w.id, w.seen(), "  ", "reviewed", CHARSET)
    assert load(d)[0] == w  # nothing written
    label = tmp_path / "Label.txt"
    good = label.read_text(encoding="utf-8")
    label.write_text(good.replace('"predicted"', '"done"', 1), encoding="utf-8")
    with pytest.raises(HwocrError, match=r"Label.txt line 1 word 1: status 'done' is not one of predicted"):
        load(d)
    label.write_text(good.replace("\t[", "\t{", 1), encoding="utf-8")
    with pytest.raises(HwocrError, match=r"Label.txt line 1: its words are not JSON"):
        load(d)
