"""Scores: the figures of models.metrics, named once for MLflow, the JSON, the summary and the CLI."""

import math
from typing import Annotated

import pytest

from models import metrics
from models.metrics import Metric, Scores

CASES = [
    (["한글", "한굴", "ab", "x"], ["한글", "한글", "ab", "y"]),
    (["", "abcd", "z"], ["abc", "ab", "z"]),
    (["a"], ["a"]),
]


@pytest.mark.parametrize(("preds", "gts"), CASES)
def test_of_equals_the_functions(preds, gts):
    scores = Scores.of(preds, gts)
    assert scores.samples == len(gts)
    assert scores.accuracy == metrics.word_accuracy(preds, gts)
    assert scores.norm_ed == metrics.norm_ed(preds, gts)
    assert scores.cer == metrics.cer(preds, gts)


def test_of_nothing_is_nan_and_mismatch_raises():
    empty = Scores.of([], [])
    assert empty.samples == 0 and all(math.isnan(v) for v in empty.metrics().values())
    with pytest.raises(ValueError):
        Scores.of(["a"], [])


def test_metrics_names_and_json():
    scores = Scores(samples=40, accuracy=42.5, norm_ed=0.71834, cer=0.22951)
    assert scores.metrics("val_") == {"val_accuracy": 42.5, "val_norm_ed": 0.71834, "val_cer": 0.22951}
    assert scores.metrics() == {"accuracy": 42.5, "norm_ed": 0.71834, "cer": 0.22951}
    assert scores.model_dump() == {"samples": 40, "accuracy": 42.5, "norm_ed": 0.71834, "cer": 0.22951}
    assert scores.rounded() == {"samples": 40, "accuracy": 42.5, "norm_ed": 0.7183, "cer": 0.2295}


def test_text_as_the_cli_prints_it():
    scores = Scores(samples=40, accuracy=42.5, norm_ed=0.71834, cer=0.22951)
    assert scores.text() == "accuracy 42.50%, norm_ED 0.7183, CER 0.2295"
    assert scores.text("accuracy", "cer") == "accuracy 42.50%, CER 0.2295"


def _mean_length(preds: list[str], gts: list[str]) -> float:
    return sum(map(len, preds)) / len(preds)


def test_the_fields_drive_every_form():
    """A new metric is a field of Scores and nothing else: of, metrics, text and rounded pick it up."""

    class Plain(Scores):
        mean_length: float = 0.0

    assert Plain.names() == ["accuracy", "norm_ed", "cer"]  # a field without its Metric is not a metric

    class Extra(Scores):
        mean_length: Annotated[float, Metric(_mean_length, "length", 1, " chars")]

    scores = Extra.of(["ab", "abcd"], ["ab", "abc"])
    assert Extra.names() == ["accuracy", "norm_ed", "cer", "mean_length"]
    assert scores.mean_length == 3.0 and scores.metrics("x_")["x_mean_length"] == 3.0
    assert scores.text().endswith(", length 3.0 chars")
    assert scores.rounded()["mean_length"] == 3.0


def test_grouped_matches_breakdown():
    preds, gts = CASES[0]
    fonts = ["pen", "pen", "brush", "brush"]
    grouped = Scores.grouped(preds, gts, fonts)
    assert list(grouped) == ["brush", "pen"]
    assert grouped["pen"] == Scores.of(preds[:2], gts[:2])
    assert {k: s.model_dump() for k, s in grouped.items()} == metrics.breakdown(preds, gts, fonts)
    by_len = Scores.grouped(["a", "bc"], ["a", "bd"], [1, 2])
    assert list(by_len) == [1, 2] and by_len[2].norm_ed == pytest.approx(0.5)
    with pytest.raises(ValueError):
        Scores.grouped(["a"], ["a"], [])
