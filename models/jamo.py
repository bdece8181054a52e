"""Why a model misreads Korean: each syllable as its initial, medial and final jamo, the error rate of each position,
and the pairs it confuses most, of characters and of jamo; digits, Latin letters and other characters are classes of
their own.

A prediction is aligned to its label by edit operations (rapidfuzz's Levenshtein opcodes): a label syllable read as
another syllable is compared position by position; one dropped, or read as something that is not a syllable, is
`missed`. Position rates are over the syllables read as a syllable, so a model that drops syllables is not credited
with clean jamo.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein

INITIALS = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
MEDIALS = "ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ"
FINALS = ("", *"ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ")
POSITIONS = ("initial", "medial", "final")
FIRST, LAST = 0xAC00, 0xD7A3  # 가 .. 힣: 19 x 21 x 28 syllables
NONE = "∅"  # a final that is not there, in a confusion pair


def decompose(c: str) -> tuple[str, str, str] | None:
    """(initial, medial, final) of a Hangul syllable as compatibility jamo (final "" when it has none); None for
    any other character."""
    n = ord(c) - FIRST
    if not 0 <= n <= LAST - FIRST:
        return None
    return INITIALS[n // 588], MEDIALS[n % 588 // 28], FINALS[n % 28]


def compose(initial: str, medial: str, final: str = "") -> str:
    return chr(FIRST + INITIALS.index(initial) * 588 + MEDIALS.index(medial) * 28 + FINALS.index(final))


def kind(c: str) -> str:
    if decompose(c):
        return "hangul"
    if "0" <= c <= "9":
        return "digit"
    if c.isascii() and c.isalpha():
        return "latin"
    return "other"


def _rate(errors: int, n: int) -> float | None:
    return round(100.0 * errors / n, 2) if n else None


def analyze(preds: Sequence[str], gts: Sequence[str], top: int = 12) -> dict:
    """The jamo breakdown of a split: {"syllables", "read", "missed", "initial"|"medial"|"final": {"errors", "rate"},
    "classes": {kind: {"characters", "errors", "rate"}}} and the confusions, most frequent first (ties by first
    seen): [{"level": "character"|"jamo", "position" (jamo only), "truth", "read", "count", "example"}], `example`
    the index of the first sample that shows the pair; `top` of each level."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground truths")
    chars, wrong = Counter(), Counter()
    position_errors = Counter()
    syllables = read = 0
    pairs: Counter = Counter()
    jamo_pairs: Counter = Counter()
    example: dict = {}
    for n, (p, g) in enumerate(zip(preds, gts)):
        for tag, i1, i2, j1, j2 in Levenshtein.opcodes(g, p):
            truth = g[i1:i2]
            read_as = p[j1:j2] if tag == "replace" else [None] * len(truth)
            for t, r in zip(truth, read_as):
                k = kind(t)
                chars[k] += 1
                parts = decompose(t)
                syllables += parts is not None
                if tag == "equal":
                    read += parts is not None
                    continue
                wrong[k] += 1
                if r is None:
                    continue
                pairs[(t, r)] += 1
                example.setdefault(("character", t, r), n)
                got = decompose(r)
                if parts is None or got is None:
                    continue
                read += 1
                for position, a, b in zip(POSITIONS, parts, got):
                    if a != b:
                        position_errors[position] += 1
                        pair = (position, a or NONE, b or NONE)
                        jamo_pairs[pair] += 1
                        example.setdefault(("jamo", *pair), n)
    report = {"syllables": syllables, "read": read, "missed": syllables - read,
              **{p: {"errors": position_errors[p], "rate": _rate(position_errors[p], read)} for p in POSITIONS},
              "classes": {k: {"characters": chars[k], "errors": wrong[k], "rate": _rate(wrong[k], chars[k])}
                          for k in ("hangul", "digit", "latin", "other") if chars[k]}}
    order = {key: i for i, key in enumerate(example)}  # ties: the pair seen first comes first
    confusions = [{"level": "character", "truth": t, "read": r, "count": c, "example": example[("character", t, r)]}
                  for (t, r), c in sorted(pairs.items(), key=lambda kv: (-kv[1], order[("character", *kv[0])]))[:top]]
    confusions += [{"level": "jamo", "position": pos, "truth": t, "read": r, "count": c,
                    "example": example[("jamo", pos, t, r)]}
                   for (pos, t, r), c in sorted(jamo_pairs.items(),
                                                key=lambda kv: (-kv[1], order[("jamo", *kv[0])]))[:top]]
    return {"jamo": report, "confusions": confusions}


def lines(analysis: dict, shown: int = 5) -> list[str]:
    """The breakdown in two lines, for a console."""
    j = analysis["jamo"]
    if not j["syllables"]:
        return []
    rates = ", ".join(f"{p} {j[p]['rate']:.2f}%" if j[p]["rate"] is not None else f"{p} -" for p in POSITIONS)
    out = [f"jamo errors of the {j['read']} syllables read as one: {rates}; {j['missed']} of {j['syllables']} "
           "syllables missed"]
    top = [c for c in analysis["confusions"] if c["level"] == "jamo"][:shown]
    if top:
        out.append("most confused: " + ", ".join(f"{c['position']} {c['truth']}→{c['read']} ×{c['count']}"
                                                 for c in top))
    return out
