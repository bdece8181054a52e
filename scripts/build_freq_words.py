"""Build synth/data/words_ko_freq.txt, the `frequency` word source: the most frequent Korean words of wordfreq,
kept to korean_g2 and with offensive words left out, then a word for each syllable the frequency list never uses.

wordfreq is not one of hwocr's dependencies; run this in a scratch venv:
    python3 -m venv /tmp/wf && /tmp/wf/bin/pip install wordfreq==3.1.1
    /tmp/wf/bin/python scripts/build_freq_words.py
Same inputs, same file byte for byte. synth/data/WORDS.md describes the result and its licence.
"""

from __future__ import annotations

import argparse
import os
import re
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANGUL_WORD = re.compile(r"[가-힣]{2,}")  # wordfreq's Korean tokens are morphemes: single syllables are particles
TOP = 20_000
SEED_LIST = os.path.join(ROOT, "synth", "data", "words_ko.txt")


def blocked(word: str, blocklist: dict[str, set[str]]) -> bool:
    return (word in blocklist["word"] or any(word.startswith(b) for b in blocklist["prefix"])
            or any(b in word for b in blocklist["inside"]))


def read_blocklist(path: str) -> dict[str, set[str]]:
    """Lines `word X`, `prefix X` or `inside X`; # starts a comment."""
    rules: dict[str, set[str]] = {"word": set(), "prefix": set(), "inside": set()}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if line:
                kind, _, text = line.partition(" ")
                if kind not in rules or not text:
                    raise SystemExit(f"{path}:{n}: expected `word|prefix|inside TEXT`, got {line!r}")
                rules[kind].add(unicodedata.normalize("NFC", text.strip()))
    return rules


def main() -> None:
    import wordfreq

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--charset", default=os.path.join(ROOT, "models", "korean_g2.txt"))
    ap.add_argument("--blocklist", default=os.path.join(ROOT, "synth", "data", "blocklist_ko.txt"))
    ap.add_argument("--out", default=os.path.join(ROOT, "synth", "data", "words_ko_freq.txt"))
    args = ap.parse_args()
    with open(args.charset, encoding="utf-8") as f:
        charset = set(f.read().rstrip("\n"))
    rules = read_blocklist(args.blocklist)
    words, seen, dropped = [], set(), 0
    for token in wordfreq.top_n_list("ko", 1_000_000):
        word = unicodedata.normalize("NFC", token)
        if word in seen or not HANGUL_WORD.fullmatch(word) or not charset.issuperset(word):
            continue
        seen.add(word)
        if blocked(word, rules):
            dropped += 1
            continue
        words.append(word)
        if len(words) == TOP:
            break
    # Syllables no frequent word uses: the shortest word of the seed's list holding each (the seed's list covers
    # every syllable of korean_g2).
    syllables = sorted(c for c in charset if "가" <= c <= "힣")
    used = set("".join(words))
    with open(SEED_LIST, encoding="utf-8") as f:
        seed = [w for w in f.read().split("\n") if re.fullmatch("[가-힣]+", w) and not blocked(w, rules)]
    extra = []
    for s in syllables:
        if s not in used:
            # two syllables or more where the seed's list has one: a syllable alone is rarely written
            best = min((w for w in seed if s in w), key=lambda w: (len(w) < 2, len(w), w))
            extra.append(best)
            used.update(best)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(w + "\n" for w in words + extra)
    print(f"wrote {args.out}: {len(words)} frequent words ({dropped} blocked), {len(extra)} for the other "
          f"syllables; {len(set(''.join(words + extra)) & set(syllables))} of {len(syllables)} syllables")


if __name__ == "__main__":
    main()
