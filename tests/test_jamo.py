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
def test_a_model_made_to_confuse_two_jamo_shows_that_pair_first(tiny_lmdb, tmp_path):
    """The tiny set trained with 한글 labelled 한걸 (its ㅡ taught as ㅓ): read against the true labels, its
    evaluation names medial ㅡ→ㅓ first, with the image, in evaluation.json, confusions.png and the console lines."""
    from models.evaluation import evaluate_checkpoint
    from models.lmdb_format import PackSettings, pack
    from models.trainer import train
    from tests.tiny import WORDS, settings

    src = os.path.dirname(tiny_lmdb)

    def folder(name: str, labels: list[str]) -> str:
        shutil.copytree(os.path.join(src, "img"), tmp_path / name / "img")
        (tmp_path / name / "gt.txt").write_text("".join(f"img/{i}.png\t{w}\n" for i, w in enumerate(labels)),
                                                encoding="utf-8")
        return str(tmp_path / name)

    taught = folder("taught", ["한걸", *WORDS[1:]])
    pack(os.path.join(taught, "gt.txt"), taught, os.path.join(taught, "lmdb"), PackSettings())
    result = train(settings(num_iter=240, val_interval=60), [os.path.join(taught, "lmdb")],
                   os.path.join(taught, "lmdb"), str(tmp_path / "run"), log=lambda m: None)
    assert result["best_accuracy"] == 100.0  # it reads 한걸 where 한글 is written
    report = evaluate_checkpoint(str(tmp_path / "run" / "best_accuracy.pth"), folder("truth", WORDS),
                                 str(tmp_path / "eval"))
    first = report["confusions"][0]
    assert (first["level"], first["truth"], first["read"], first["example_path"]) == ("character", "글", "걸",
                                                                                      "img/0.png")
    jamo = [c for c in report["confusions"] if c["level"] == "jamo"]
    assert (jamo[0]["position"], jamo[0]["truth"], jamo[0]["read"]) == ("medial", "ㅡ", "ㅓ")
    assert report["jamo"]["medial"]["errors"] == 1 and report["jamo"]["initial"]["errors"] == 0
    assert lines(report)[1].startswith("most confused: medial ㅡ→ㅓ ×1")
    with open(tmp_path / "eval" / "evaluation.json", encoding="utf-8") as f:
        assert json.load(f)["confusions"] == report["confusions"]
    with Image.open(report["confusions_picture"]) as im:
        assert im.width > 400 and im.height > 100


@pytest.mark.slow
def test_digits_and_latin_are_classes_of_their_own_in_an_evaluation(trained, tiny_lmdb, tmp_path):
    """The tiny model reads its four words; labelled with a digit and a letter changed, the classes say so."""
    from models.evaluation import evaluate_checkpoint

    shutil.copytree(os.path.join(os.path.dirname(tiny_lmdb), "img"), tmp_path / "data" / "img")
    rows = ["한글", "사랑", "Hallo", "2025"]
    (tmp_path / "data" / "gt.txt").write_text("".join(f"img/{i}.png\t{w}\n" for i, w in enumerate(rows)),
                                              encoding="utf-8")
    report = evaluate_checkpoint(trained, str(tmp_path / "data"), str(tmp_path / "eval"))
    assert report["jamo"]["classes"]["digit"] == {"characters": 4, "errors": 1, "rate": 25.0}
    assert report["jamo"]["classes"]["latin"] == {"characters": 5, "errors": 1, "rate": 20.0}
    assert report["jamo"]["classes"]["hangul"]["errors"] == 0
