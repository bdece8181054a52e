"""Confidence you can act on (models/calibration.py): the reliability table, the expected calibration error and the
thresholds for 99% and 95% precision, in every evaluation and in the bundle README."""

import os
import shutil

import pytest

from models.calibration import MIN_WORDS, calibrate, lines, readme_section


def readings():
    """400 readings: 200 at 0.95 all right, 100 at 0.8 with 90 right, 100 at 0.3 with 10 right."""
    conf = [0.95] * 200 + [0.8] * 100 + [0.3] * 100
    right = [True] * 200 + [True] * 90 + [False] * 10 + [True] * 10 + [False] * 90
    return conf, right


def test_thresholds_keep_the_most_words_that_reach_each_precision():
    cal = calibrate(*readings())
    assert cal["words"] == 400
    assert cal["thresholds"] == {"99": {"confidence": 0.95, "precision": 100.0, "kept": 50.0},
                                 "95": {"confidence": 0.8, "precision": round(100 * 290 / 300, 2), "kept": 75.0}}
    assert [(b["low"], b["words"], b["confidence"], b["accuracy"]) for b in cal["bins"]] == [
        (0.3, 100, 30.0, 10.0), (0.8, 100, 80.0, 90.0), (0.9, 200, 95.0, 100.0)]
    assert cal["ece"] == pytest.approx((20 * 100 + 10 * 100 + 5 * 200) / 400)
    assert lines(cal)[1] == "  99% precision: confidence >= 0.9500 keeps 50.0% of words"
    section = readme_section(cal, "validation")
    assert "| 99% | 0.9500 | 50.0% |" in section and "| 95% | 0.8000 | 75.0% |" in section


def test_a_precision_no_threshold_reaches_is_said():
    conf, right = [0.9] * 250, [True] * 200 + [False] * 50  # one confidence, 80% right
    cal = calibrate(conf, right)
    assert cal["thresholds"] == {"99": None, "95": None}
    assert "| 99% | not reached | - |" in readme_section(cal, "validation")


def test_a_split_too_small_is_said_and_skipped():
    cal = calibrate([0.9] * (MIN_WORDS - 1), [True] * (MIN_WORDS - 1))
    assert cal == {"words": MIN_WORDS - 1, "skipped": f"{MIN_WORDS - 1} words: calibration needs at least {MIN_WORDS}"}
    assert lines(cal) == [f"calibration skipped: {MIN_WORDS - 1} words: calibration needs at least {MIN_WORDS}"]
    assert "Not calibrated (199 words" in readme_section(cal, "validation")


@pytest.mark.slow
def test_an_evaluation_calibrates_on_its_predictions_and_the_bundle_readme_gives_the_thresholds(
        trained, tiny_lmdb, tmp_path):
    from models.bundle import ExportSettings, export_easyocr_fn
    from models.evaluation import evaluate_checkpoint

    src = os.path.join(os.path.dirname(tiny_lmdb), "img")
    words = ["한글", "사랑", "Hello", "2024"]

    def folder(name, rows):
        shutil.copytree(src, tmp_path / name / "img")
        (tmp_path / name / "gt.txt").write_text("".join(f"{p}\t{label}\n" for p, label in rows), encoding="utf-8")
        return str(tmp_path / name)

    # The model reads all four; the one it is least sure of gets half of its 60 rows labelled otherwise.
    once = evaluate_checkpoint(trained, folder("once", [(f"img/{i}.png", w) for i, w in enumerate(words)]),
                               str(tmp_path / "eval-once"))
    with open(once["predictions"], encoding="utf-8") as f:
        confidences = [float(line.split("\t")[3]) for line in f.read().splitlines()[1:]]
    least = confidences.index(min(confidences))
    rows = [(f"img/{i}.png", "한국" if i == least and k < 30 else w) for i, w in enumerate(words) for k in range(60)]
    report = evaluate_checkpoint(trained, folder("data", rows), str(tmp_path / "eval"))
    cal = report["calibration"]
    assert cal["words"] == 240 and os.path.getsize(report["calibration_picture"]) > 0
    # Above the least sure image every reading is right: 99% precision keeps the other three images' 180 rows.
    assert cal["thresholds"]["99"]["kept"] == 75.0 and cal["thresholds"]["99"]["confidence"] > min(confidences)
    # Every threshold is what predictions.tsv says: the readings at or above it are right that often.
    with open(report["predictions"], encoding="utf-8") as f:
        table = [line.split("\t") for line in f.read().splitlines()[1:]]
    for target, t in cal["thresholds"].items():
        kept = [label == read for _, label, read, conf in table if float(conf) >= t["confidence"] - 5e-5]
        assert len(kept) == round(t["kept"] * 240 / 100) and 100 * sum(kept) / len(kept) >= float(target)
    bundle = export_easyocr_fn(trained, str(tmp_path / "bundle"), ExportSettings(name="hwocr_cal"), calibration=cal)
    with open(bundle["readme"], encoding="utf-8") as f:
        readme = f.read()
    assert readme_section(cal, "validation") in readme and "## Confidence" in readme
    assert os.path.getsize(os.path.join(bundle["dir"], "calibration.png")) > 0  # the picture the README shows
