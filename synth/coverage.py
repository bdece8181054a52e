"""Every Hangul syllable of the character set drawn at least N times a split (render.min_syllable_draws): the words
that do it, dealt over the fonts that can draw them. A font draws its share of them first (its images 0, 1, ...),
then words at random as before. Standard library only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def hangul(charset: Iterable[str]) -> set[str]:
    return {c for c in charset if "가" <= c <= "힣"}


def covering_words(words: list[str], syllables: set[str], n: int) -> list[str]:
    """Words, short ones first, until every syllable the list uses appears n times among them (a word may come back
    when a syllable has fewer than n words)."""
    if n <= 0:
        return []
    by_syllable: dict[str, list[str]] = {}
    for w in sorted(dict.fromkeys(words), key=len):  # stable: ties keep the list's order
        for c in set(w) & syllables:
            by_syllable.setdefault(c, []).append(w)
    counts: Counter = Counter()
    out: list[str] = []
    for s in sorted(by_syllable):
        candidates, k = by_syllable[s], 0
        while counts[s] < n:
            w = candidates[k % len(candidates)]
            k += 1
            out.append(w)
            counts.update(c for c in w if c in syllables)
    return out


def deal(cover: list[str], fonts: list[tuple[str, str, int]]) -> tuple[dict[str, list[str]], list[str]]:
    """Deal the covering words over fonts [(sha256, characters it draws, images it renders)]: each word to the
    font that can draw it with the most images left. Returns the words per font and those no font could take."""
    left = {sha: n for sha, _, n in fonts}
    draws = {sha: set(chars) for sha, chars, _ in fonts}
    dealt: dict[str, list[str]] = {sha: [] for sha, _, _ in fonts}
    undealt = []
    for w in cover:
        able = [sha for sha, _, _ in fonts if left[sha] > 0 and draws[sha].issuperset(w)]
        if not able:
            undealt.append(w)
            continue
        sha = max(able, key=lambda s: left[s])  # ties: the first font (fonts come in hash order)
        dealt[sha].append(w)
        left[sha] -= 1
    return dealt, undealt


def syllable_coverage(words: list[str], syllables: set[str]) -> dict:
    """How many of the syllables the words use, the fewest times one is drawn (0 when one is missing), the missing
    and the rarest ones."""
    counts = Counter(c for w in words for c in w if c in syllables)
    missing = sorted(syllables - counts.keys())
    return {"syllables": len(syllables), "covered": len(syllables) - len(missing),
            "least_drawn": 0 if missing else min(counts.values(), default=0), "missing": "".join(missing[:50]),
            "rarest": "".join(c for c, _ in sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))[:20])}
