#!/usr/bin/env python3
"""Build hwocr's default word list, synth/data/words_ko.txt.

The list mixes ~300 numbers, ~1,000 English words and ~7,000 Korean words,
every one made only of characters of models/korean_g2.txt, NFC, at most 25
characters, no whitespace, no duplicates. Standard library only; the output is
deterministic (fixed seed, code-point sorts, no set/dict iteration order used
for selection).

Sources are two Debian (bookworm) packages, fetched without installing them:

    mkdir -p /tmp/wl && cd /tmp/wl
    apt-get download hunspell-ko wamerican      # hunspell-ko 0.7.92-1, wamerican 2020.12.07-2
    dpkg -x hunspell-ko_*_all.deb ext
    dpkg -x wamerican_*_all.deb ext

then, from the repository root:

    python3 scripts/build_wordlist.py \\
        --dic /tmp/wl/ext/usr/share/hunspell/ko.dic \\
        --words /tmp/wl/ext/usr/share/dict/american-english

Licences and provenance: synth/data/WORDS.md (the copyright files are in
/tmp/wl/ext/usr/share/doc/{hunspell-ko,wamerican}/copyright).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CHARSET = os.path.join(ROOT, "models", "korean_g2.txt")
DEFAULT_OUT = os.path.join(ROOT, "synth", "data", "words_ko.txt")

SEED = 0
MAX_LEN = 25

N_NUMBERS = 300
N_ENGLISH = 1000
ENGLISH_LEN = (2, 14)
# Korean quota per word length (syllables); 7+ shares one bucket. Sum = 7,000.
# Short words are favoured; inside a bucket the pick is a seeded uniform sample
# of the code-point-sorted candidates, i.e. a spread across the whole dictionary.
KOREAN_QUOTA = {1: 250, 2: 2600, 3: 2500, 4: 1200, 5: 350, 6: 80, 7: 20}


def is_syllable(c: str) -> bool:
    return "\uac00" <= c <= "\ud7a3"


def load_charset(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        chars = f.read()  # not stripped: the set contains the space
    if len(set(chars)) != len(chars):
        sys.exit(f"{path}: duplicate characters")
    return chars


# --------------------------------------------------------------------- numbers
def build_numbers(rng: random.Random, allowed: set[str], n: int = N_NUMBERS) -> list[str]:
    """A fixed recipe of number-like strings; each kind gets a quota, filled with unique strings."""
    out: list[str] = []
    seen: set[str] = set()

    def take(quota: int, fixed: list[str], gen) -> None:
        got = 0
        for s in fixed:
            if got < quota and s not in seen:
                seen.add(s)
                out.append(s)
                got += 1
        while got < quota:
            s = gen()
            if s not in seen:
                seen.add(s)
                out.append(s)
                got += 1

    # small integers: 0..20, then a spread up to 9999
    take(60, [str(i) for i in range(21)],
         lambda: str(rng.choice([rng.randint(21, 99), rng.randint(100, 999), rng.randint(1000, 9999)])))
    # years
    take(40, ["1945", "1988", "2000", "2002", "2024", "2025"], lambda: str(rng.randint(1950, 2035)))
    # decimals
    take(40, ["3.14", "0.5", "1.5", "2.5", "0.1", "99.9", "36.5"],
         lambda: (f"{rng.randint(0, 999)}.{rng.randint(0, 9)}" if rng.random() < 0.5
                  else f"{rng.randint(0, 99)}.{rng.randint(0, 99):02d}"))
    # thousands separators
    take(40, ["1,000", "10,000", "100,000", "1,000,000", "5,000", "50,000"],
         lambda: format(rng.choice([rng.randint(1, 9) * 1000 + rng.choice([0, 500]), rng.randint(1000, 99999),
                                    rng.randint(100000, 9999999), rng.randint(10, 999) * 1000]), ","))
    # phone-like
    def phone() -> str:
        r = rng.random()
        if r < 0.7:
            return f"010-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
        if r < 0.85:
            return f"02-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
        area = rng.choice([31, 32, 33, 41, 42, 43, 51, 52, 53, 54, 55, 61, 62, 63, 64])
        return f"0{area}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
    take(30, ["010-1234-5678"], phone)
    # percentages
    take(30, ["100%", "50%", "0%", "3.5%"],
         lambda: f"{rng.randint(1, 99)}%" if rng.random() < 0.6 else f"{rng.randint(0, 99)}.{rng.randint(1, 9)}%")
    # dates
    def date() -> str:
        y, m, d = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
        return rng.choice([f"{y}.{m:02d}.{d:02d}", f"{y}-{m:02d}-{d:02d}", f"{y}/{m:02d}/{d:02d}", f"{m}/{d}"])
    take(25, [], date)
    # times of day
    take(15, ["12:00", "09:30"], lambda: f"{rng.randint(0, 23):02d}:{rng.choice(range(0, 60, 5)):02d}")
    # ranges and signed numbers
    take(10, ["1~3"], lambda: (lambda a: f"{a}~{a + rng.randint(1, 20)}")(rng.randint(1, 50)))
    take(n - len(out), ["-1", "+1"],
         lambda: rng.choice("-+") + (str(rng.randint(1, 99)) if rng.random() < 0.6
                                     else f"{rng.randint(0, 40)}.{rng.randint(1, 9)}"))

    assert len(out) == n, len(out)
    bad = [s for s in out if not set(s) <= allowed]
    assert not bad, bad
    return out


# --------------------------------------------------------------------- English
def build_english(path: str, rng: random.Random, allowed: set[str], n: int = N_ENGLISH) -> tuple[list[str], dict]:
    with open(path, encoding="utf-8") as f:
        raw = f.read().splitlines()
    cand: set[str] = set()
    drop = {"non_ascii_or_charset": 0, "possessive": 0, "length": 0}
    for line in raw:
        w = line.strip()
        if not w:
            continue
        if not w.isascii() or not w.isprintable() or " " in w or not set(w) <= allowed:
            drop["non_ascii_or_charset"] += 1
        elif w.endswith("'s"):
            drop["possessive"] += 1
        elif not (ENGLISH_LEN[0] <= len(w) <= ENGLISH_LEN[1]):
            drop["length"] += 1
        else:
            cand.add(w)
    pool = sorted(cand)
    picked = sorted(rng.sample(pool, n))
    return picked, {"lines": len(raw), "candidates": len(pool), "dropped": drop}


# --------------------------------------------------------------------- Korean
def read_hunspell(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if lines and lines[0].strip().isdigit():
        lines = lines[1:]  # entry count
    words = []
    for line in lines:
        w = line.split("/", 1)[0].strip()  # drop affix flags
        if w:
            words.append(unicodedata.normalize("NFC", w))
    return words


def build_korean(path: str, rng: random.Random, charset: str, exclude: set[str]) -> tuple[list[str], dict]:
    allowed = set(charset)
    entries = read_hunspell(path)
    uniq = sorted(set(entries))
    drop = {"out_of_charset": [], "whitespace": 0, "no_hangul_syllable": 0, "too_long": 0}
    cand: list[str] = []
    for w in uniq:
        if any(c.isspace() for c in w):
            drop["whitespace"] += 1
        elif not any(is_syllable(c) for c in w):
            drop["no_hangul_syllable"] += 1  # single jamo, bare digits / letters
        elif not set(w) <= allowed:
            drop["out_of_charset"].append(w)
        elif len(w) > MAX_LEN:
            drop["too_long"] += 1
        elif w not in exclude:
            cand.append(w)
    top = max(KOREAN_QUOTA)
    buckets: dict[int, list[str]] = {k: [] for k in sorted(KOREAN_QUOTA)}
    for w in cand:
        buckets[min(len(w), top)].append(w)

    # 1) coverage: every syllable of the charset that the dictionary can show gets
    #    its shortest word of 2+ syllables (a bare 1-syllable entry only if there is
    #    none; ties: code-point order), so the renderer sees every syllable.
    picked: set[str] = set()
    by_syl: dict[str, str] = {}
    for w in sorted(cand, key=lambda w: (len(w) == 1, len(w), w)):
        for c in w:
            if is_syllable(c) and c not in by_syl:
                by_syl[c] = w
    for c in charset:
        if c in by_syl:
            picked.add(by_syl[c])
    coverage_words = len(picked)

    # 2) fill each length bucket to its quota with a seeded sample; a bucket's
    #    shortfall (or, negative, its surplus of coverage words) carries to the next.
    carry = 0
    for k in sorted(KOREAN_QUOTA):
        have = sum(1 for w in picked if min(len(w), top) == k)
        need = KOREAN_QUOTA[k] + carry - have
        rest = [w for w in buckets[k] if w not in picked]
        take = max(0, min(need, len(rest)))
        picked.update(rng.sample(rest, take))
        carry = need - take
    words = sorted(picked)
    syl = sorted(c for c in charset if is_syllable(c))
    covered = {c for w in words for c in w}
    report = {
        "entries": len(entries),
        "unique": len(uniq),
        "candidates": len(cand),
        "buckets": {k: len(v) for k, v in buckets.items()},
        "coverage_words": coverage_words,
        "syllables_covered": sum(1 for c in syl if c in covered),
        "syllables_total": len(syl),
        "syllables_missing": "".join(c for c in syl if c not in covered),
        "dropped": drop,
    }
    return words, report


# --------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dic", required=True, help="hunspell-ko ko.dic (usr/share/hunspell/ko.dic)")
    ap.add_argument("--words", required=True, help="wamerican word list (usr/share/dict/american-english)")
    ap.add_argument("--charset", default=DEFAULT_CHARSET, help="character set file (default: models/korean_g2.txt)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output file (default: synth/data/words_ko.txt)")
    a = ap.parse_args(argv)

    charset = load_charset(a.charset)
    allowed = set(charset)
    rng = random.Random(SEED)  # one stream, consumed in a fixed order
    numbers = build_numbers(rng, allowed)
    english, en_rep = build_english(a.words, rng, allowed)
    korean, ko_rep = build_korean(a.dic, rng, charset, exclude=set(numbers) | set(english))

    out: list[str] = []
    seen: set[str] = set()
    # blocks in this order; numbers grouped by kind, English and Korean sorted
    for w in numbers + english + korean:
        if w not in seen:
            seen.add(w)
            out.append(w)
    for w in out:  # the contract of the file
        assert w and w == unicodedata.normalize("NFC", w), w
        assert set(w) <= allowed and len(w) <= MAX_LEN, w
        assert not any(c.isspace() for c in w), w
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(out) + "\n")

    oc = ko_rep["dropped"]["out_of_charset"]
    step = max(1, len(oc) // 10)
    print(f"wrote {a.out}: {len(out)} words")
    print(f"  numbers  {len(numbers)}")
    print(f"  english  {len(english)}  (of {en_rep['candidates']} candidates; {en_rep['lines']} lines; "
          f"dropped {en_rep['dropped']})")
    print(f"  korean   {len(korean)}  (of {ko_rep['candidates']} candidates; {ko_rep['entries']} entries, "
          f"{ko_rep['unique']} unique after NFC)")
    print(f"  korean candidates by length (7 = 7+): {ko_rep['buckets']}")
    print(f"  hunspell entries dropped for characters outside the set: {len(oc)} unique words, e.g. {oc[::step][:10]}")
    d = ko_rep["dropped"]
    print(f"  hunspell entries dropped otherwise: whitespace {d['whitespace']}, no Hangul syllable "
          f"(jamo/digits/letters) {d['no_hangul_syllable']}, longer than {MAX_LEN} {d['too_long']}")
    print(f"  charset syllables covered: {ko_rep['syllables_covered']}/{ko_rep['syllables_total']} "
          f"({ko_rep['coverage_words']} coverage words); missing: {ko_rep['syllables_missing'] or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
