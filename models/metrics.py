"""Recognition metrics, in one place: word accuracy, the benchmark's normalized edit distance, CER.

All comparisons are case-sensitive and by Unicode code point (labels are NFC, as the codec stores them).
An empty list of samples gives nan (no data, not a score).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

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


def breakdown(preds: Sequence[str], gts: Sequence[str], keys: Sequence[Hashable]) -> dict:
    """{key: {"samples", "accuracy", "norm_ed", "cer"}} over the samples sharing each key (font, length, ...).

    Keys come out sorted when they are comparable, else in order of first appearance.
    """
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
    return {k: {"samples": len(groups[k][1]), "accuracy": word_accuracy(*groups[k]),
                "norm_ed": norm_ed(*groups[k]), "cer": cer(*groups[k])} for k in order}
