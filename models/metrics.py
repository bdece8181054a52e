"""Recognition metrics, in one place: word accuracy, the benchmark's normalized edit distance, CER; Scores holds them.

All comparisons are case-sensitive and by Unicode code point (labels are NFC, as the codec stores them).
An empty list of samples gives nan (no data, not a score).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel
from rapidfuzz.distance import Levenshtein


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance in characters (insert, delete, substitute: cost 1 each)."""
    return Levenshtein.distance(a, b)


def _check(preds: Sequence[str], gts: Sequence[str]) -> None:
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground truths")


def word_accuracy(preds: Sequence[str], gts: Sequence[str]) -> float:
    """Percent of exact (case-sensitive) matches, as the benchmark's test.py reports accuracy."""
    _check(preds, gts)
    if not gts:
        return float("nan")
    return 100.0 * sum(p == g for p, g in zip(preds, gts)) / len(gts)


def norm_ed(preds: Sequence[str], gts: Sequence[str]) -> float:
    """ICDAR2019 normalized edit distance exactly as the benchmark's test.py computes it (higher is better).

    Per sample: 0 if either string is empty (even when both are), else 1 - ED / max(len(gt), len(pred));
    averaged over the samples.
    """
    _check(preds, gts)
    if not gts:
        return float("nan")
    total = 0.0
    for pred, gt in zip(preds, gts):
        if len(gt) == 0 or len(pred) == 0:
            total += 0
        elif len(gt) > len(pred):
            total += 1 - edit_distance(pred, gt) / len(gt)
        else:
            total += 1 - edit_distance(pred, gt) / len(pred)
    return total / float(len(gts))


def cer(preds: Sequence[str], gts: Sequence[str]) -> float:
    """Character error rate: sum of edit distances / sum of ground-truth lengths (lower is better).

    With only empty ground truths it is 0 when every prediction is empty too, else inf.
    """
    _check(preds, gts)
    if not gts:
        return float("nan")
    errors = sum(edit_distance(p, g) for p, g in zip(preds, gts))
    chars = sum(len(g) for g in gts)
    if chars == 0:
        return 0.0 if errors == 0 else float("inf")
    return errors / chars


@dataclass(frozen=True)
class Metric:
    """A field of Scores: how it is computed from (preds, gts) and how it is printed."""

    compute: Callable[[Sequence[str], Sequence[str]], float]
    label: str
    digits: int
    unit: str = ""


class Scores(BaseModel):
    """Predictions scored against their labels. Every figure hwocr reports is a field here: MLflow, the JSON, the
    summary, the CLI and the Prefect tables iterate these fields, so a new metric is a new field and nothing else."""

    samples: int
    accuracy: Annotated[float, Metric(word_accuracy, "accuracy", 2, "%")]
    norm_ed: Annotated[float, Metric(norm_ed, "norm_ED", 4)]
    cer: Annotated[float, Metric(cer, "CER", 4)]

    @classmethod
    def measures(cls) -> dict[str, Metric]:
        """The metric fields (samples is a count, not one), in order."""
        return {name: m for name, f in cls.model_fields.items() for m in f.metadata if isinstance(m, Metric)}

    @classmethod
    def names(cls) -> list[str]:
        return list(cls.measures())

    @classmethod
    def of(cls, preds: Sequence[str], gts: Sequence[str]) -> Scores:
        return cls(samples=len(gts), **{name: m.compute(preds, gts) for name, m in cls.measures().items()})

    @classmethod
    def grouped(cls, preds: Sequence[str], gts: Sequence[str], keys: Sequence[Hashable]) -> dict[Hashable, Scores]:
        """Scores over the samples sharing each key (font, length, ...): sorted keys when they are comparable, else
        in order of first appearance."""
        _check(preds, gts)
        if len(keys) != len(gts):
            raise ValueError(f"{len(keys)} keys for {len(gts)} samples")
        groups: dict = {}
        for p, g, k in zip(preds, gts, keys):
            ps, gs = groups.setdefault(k, ([], []))
            ps.append(p)
            gs.append(g)
        try:
            order = sorted(groups)
        except TypeError:
            order = list(groups)
        return {k: cls.of(*groups[k]) for k in order}

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """The metrics as MLflow logs them, each name prefixed: metrics("val_") -> {"val_accuracy": ...}."""
        return {prefix + name: float(getattr(self, name)) for name in self.names()}

    def text(self, *names: str) -> str:
        """`accuracy 42.50%, norm_ED 0.7183, CER 0.2295` (the given metrics only, when named)."""
        shown = self.measures()
        return ", ".join(f"{shown[n].label} {getattr(self, n):.{shown[n].digits}f}{shown[n].unit}"
                         for n in names or shown)

    def rounded(self) -> dict:
        """samples and each metric rounded as it is printed: a row of a Prefect table."""
        return {"samples": self.samples} | {n: round(getattr(self, n), m.digits) for n, m in self.measures().items()}


def breakdown(preds: Sequence[str], gts: Sequence[str], keys: Sequence[Hashable]) -> dict:
    """Scores.grouped as JSON: {key: {"samples", "accuracy", ...}}."""
    return {k: s.model_dump() for k, s in Scores.grouped(preds, gts, keys).items()}
