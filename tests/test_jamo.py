"""Why it misreads: syllables decomposed into jamo (models/jamo.py), errors per position and the pairs confused
most, in every evaluation."""

import json
import os
import shutil

import pytest
from PIL import Image

from models.charset import load_charset
from models.jamo import analyze, compose, decompose, kind, lines


def test_every_syllable_round_trips():
    for code in range(0xAC00, 0xD7A4):
        assert compose(*decompose(chr(code))) == chr(code)
    hangul = [c for c in load_charset("korean_g2") if decompose(c)]
    assert len(hangul) > 900 and all(compose(*decompose(c)) == c for c in hangul)
    assert decompose("닭") == ("ㄷ", "ㅏ", "ㄺ") and decompose("가") == ("ㄱ", "ㅏ", "")
    assert [decompose(c) for c in "ㄱA1 "] == [None] * 4  # a lone jamo is no syllable
    assert [kind(c) for c in "한7aZ-ㄱ"] == ["hangul", "digit", "latin", "latin", "other", "other"]


def test_errors_are_counted_per_position_and_confusions_come_most_frequent_first():
    # What the independent set showed: a vowel stroke or a final consonant off.
    gts = ["구룻", "낯", "묶다", "둑", "압", "할", "할", "가나다", "AB12"]
    preds = ["구릇", "낮", "묵다", "득", "암", "한", "한", "가다", "AC13"]
    a = analyze(preds, gts)
    j = a["jamo"]
    # 가나다 -> 가다: 나 dropped (missed); every other syllable is read as one.
    assert (j["syllables"], j["read"], j["missed"]) == (12, 11, 1)
    assert {p: j[p]["errors"] for p in ("initial", "medial", "final")} == {"initial": 0, "medial": 2, "final": 5}
    assert j["final"]["rate"] == round(100 * 5 / 11, 2)
    assert j["classes"] == {"hangul": {"characters": 12, "errors": 8, "rate": round(100 * 8 / 12, 2)},
                            "digit": {"characters": 2, "errors": 1, "rate": 50.0},
                            "latin": {"characters": 2, "errors": 1, "rate": 50.0}}
    characters = [(c["truth"], c["read"], c["count"], c["example"]) for c in a["confusions"]
                  if c["level"] == "character"]
    assert characters[0] == ("할", "한", 2, 5)  # the most frequent, then in the order first seen
    assert characters[1:4] == [("룻", "릇", 1, 0), ("낯", "낮", 1, 1), ("묶", "묵", 1, 2)]
    assert ("B", "C", 1, 8) in characters and ("2", "3", 1, 8) in characters
    jamo = [(c["position"], c["truth"], c["read"], c["count"]) for c in a["confusions"] if c["level"] == "jamo"]
    # Two pairs seen twice (룻→릇 and 둑→득; 할→한 twice): the one seen first leads, then the singles in order.
    assert jamo == [("medial", "ㅜ", "ㅡ", 2), ("final", "ㄹ", "ㄴ", 2), ("final", "ㅊ", "ㅈ", 1),
                    ("final", "ㄲ", "ㄱ", 1), ("final", "ㅂ", "ㅁ", 1)]
    assert lines(a)[1].startswith("most confused: medial ㅜ→ㅡ ×2, final ㄹ→ㄴ ×2")


def test_a_missing_or_added_final_is_a_pair_with_nothing():
    a = analyze(["가", "각"], ["각", "가"])
    assert [(c["truth"], c["read"]) for c in a["confusions"] if c["level"] == "jamo"] == [("ㄱ", "∅"), ("∅", "ㄱ")]
    assert analyze([], [])["jamo"]["final"]["rate"] is None  # no syllables: no rate, not a zero


@pytest.mark.slow
def test_a_model_read_against_labels_one_jamo_off_shows_that_pair_first(trained, tiny_lmdb, tmp_path):
    """The tiny model reads its four words exactly; labelled with a vowel changed (한글 as 한걸, three times) and a
    final changed (사랑 as 사람), its evaluation names the vowel pair first, with an example image, in
    evaluation.json, confusions.png and the console."""
    from models.evaluation import evaluate_checkpoint

    src = os.path.dirname(tiny_lmdb)
    folder = tmp_path / "data"
    shutil.copytree(os.path.join(src, "img"), folder / "img")
    rows = [("img/0.png", "한걸")] * 3 + [("img/1.png", "사람"), ("img/2.png", "Hello"), ("img/3.png", "2025")]
    (folder / "gt.txt").write_text("".join(f"{p}\t{label}\n" for p, label in rows), encoding="utf-8")
    report = evaluate_checkpoint(trained, str(folder), str(tmp_path / "eval"))
    assert report["accuracy"] == pytest.approx(100 / 6, abs=0.01)
    first = report["confusions"][0]
    assert (first["truth"], first["read"], first["count"], first["example_path"]) == ("걸", "글", 3, "img/0.png")
    jamo = [c for c in report["confusions"] if c["level"] == "jamo"]
    assert [(c["position"], c["truth"], c["read"], c["count"]) for c in jamo] == [
        ("medial", "ㅓ", "ㅡ", 3), ("final", "ㅁ", "ㅇ", 1)]
    assert report["jamo"]["classes"]["digit"] == {"characters": 4, "errors": 1, "rate": 25.0}
    with open(tmp_path / "eval" / "evaluation.json", encoding="utf-8") as f:
        assert json.load(f)["confusions"] == report["confusions"]
    with Image.open(report["confusions_picture"]) as im:
        assert im.width > 400 and im.height > 100
