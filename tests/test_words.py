import unicodedata

import pytest

from hwocr.errors import HwocrError
from models.charset import load_charset
from synth.words import BUNDLED_WORDS, read_words

CHARSET = load_charset("korean_g2")


def write(tmp_path, data: bytes):
    p = tmp_path / "w.txt"
    p.write_bytes(data)
    return str(p)


def test_korean_g2_is_the_seed_set():
    assert len(CHARSET) == 1008
    assert CHARSET[:3] == ' !"' and CHARSET[94] == "~" and CHARSET[95] == "가" and CHARSET[-1] == "힘"
    hangul = CHARSET[95:]
    assert len(hangul) == 913 and list(hangul) == sorted(hangul)


def test_nfd_and_bom_are_normalized(tmp_path):
    nfd = unicodedata.normalize("NFD", "한글")
    assert nfd != "한글"
    words, report = read_words(write(tmp_path, ("\ufeff" + nfd + "\n사랑\n").encode()), CHARSET)
    assert words == ["한글", "사랑"]
    assert report["kept"] == 2 and report["dropped"] == {}


def test_drops_are_counted_with_examples(tmp_path):
    data = "한글\n한글\nnaïve\n뷁\n" + "가" * 26 + "\n" + "가" * 25 + "\n"
    words, report = read_words(write(tmp_path, data.encode()), CHARSET, max_length=25)
    assert words == ["한글", "가" * 25]
    assert report["dropped"] == {"duplicate": 1, "out_of_charset": 2, "too_long": 1}
    assert report["unknown_chars"] == {"ï": 1, "뷁": 1}
    assert report["examples"]["out_of_charset"] == ["naïve", "뷁"]


def test_empty_word_list(tmp_path):
    with pytest.raises(HwocrError, match=r"w\.txt is empty"):
        read_words(write(tmp_path, b"\n  \n"), CHARSET)


def test_binary_word_list(tmp_path):
    with pytest.raises(HwocrError, match=r"w\.txt looks binary \(NUL byte at offset 2\)"):
        read_words(write(tmp_path, b"ab\x00\x01\x02"), CHARSET)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_word_list_is_named_utf16_not_binary(tmp_path, encoding):
    data = ("\ufeff" if encoding.endswith("be") else "").encode(encoding) + "한글\nabc\n".encode(encoding)
    with pytest.raises(HwocrError, match=r"w\.txt is UTF-16 text; expected UTF-8: convert it with `iconv -f utf-16"):
        read_words(write(tmp_path, data), CHARSET)


def test_other_encoding_names_line_and_encoding(tmp_path):
    data = "abc\n한글\n".encode("cp949")
    with pytest.raises(HwocrError, match=r"w\.txt line 2 is not UTF-8 .*decodes as cp949"):
        read_words(write(tmp_path, data), CHARSET)


def test_all_words_outside_charset(tmp_path):
    with pytest.raises(HwocrError, match=r"none of its 2 words is usable.*'뷁'"):
        read_words(write(tmp_path, "뷁\n똠방\n".encode()), CHARSET)


def test_bundled_list_fits_the_charset():
    words, report = read_words(BUNDLED_WORDS, CHARSET)
    assert report["dropped"] == {} and len(words) > 8000
    assert any(w.isdigit() for w in words) and any(w.isascii() and w.isalpha() for w in words)
    # Every Hangul syllable of the set appears in some word.
    assert set(CHARSET[95:]) <= set("".join(words))


def test_one_label_rule():
    from synth.labels import label_problem

    allowed = set(CHARSET)
    nfd = unicodedata.normalize("NFD", "한글")
    cases = {"": "empty_label", "한\t글": "control_char", nfd: "not_nfc", "뷁": "out_of_charset",
             "가" * 26: "too_long", "뷁" * 26: "out_of_charset", "가" * 25: None}
    assert {label: label_problem(label, allowed, 25) for label in cases} == cases


def test_frequency_list_is_clean_and_covers_every_syllable():
    from scripts.build_freq_words import blocked, read_blocklist
    from synth.words import DATA, WORD_SOURCES

    words, report = read_words(WORD_SOURCES["frequency"], CHARSET)
    assert report["dropped"] == {} and len(words) == report["words"] > 20_000
    assert set("".join(words)) >= set(CHARSET[95:])  # all 913 syllables
    rules = read_blocklist(f"{DATA}/blocklist_ko.txt")
    assert not [w for w in words if blocked(w, rules)]
    # the rules: whole word, its inflections, or anywhere; ordinary words that hold a blocked one stay
    assert blocked("새끼야", rules) and blocked("씨발놈", rules) and blocked("미친", rules)
    assert not blocked("전염병", rules) and not blocked("시발점", rules) and not blocked("미친다", rules)
    assert {"전염병", "시간", "사람"} <= set(words)


def _generated(share, seed=1111, **weights):
    from synth.text import GeneratedSettings, generate

    words = ["사람", "시간", "3개"]
    return generate(GeneratedSettings(share=share, **weights), 1000, seed, set(CHARSET), 25, set(words))


def test_generated_forms_are_valid_seeded_and_in_their_shares():
    from synth.labels import label_problem
    from synth.text import KINDS

    out, by_kind = _generated(0.2)
    assert len(out) == sum(by_kind.values()) == len(set(out)) and 240 <= len(out) <= 260  # 1000 * 0.2 / 0.8
    assert set(by_kind) == set(KINDS) - {"phrases"} and by_kind["numbers"] > by_kind["phones"]  # phrases: weight 0
    assert not [w for w in out if label_problem(w, set(CHARSET), 25)] and "3개" not in out
    assert out == _generated(0.2)[0] and out != _generated(0.2, seed=7)[0]
    phones = [w for w in out if w.startswith("010-")]
    assert phones and all(len(w) == 13 for w in phones)
    assert any(w.endswith("원") for w in out) and any(":" in w for w in out)
    assert _generated(0.0) == ([], {})
    only, kinds = _generated(0.5, numbers=0, dates=0, times=0, prices=1, phones=0, latin=0, mixed=0)
    assert set(kinds) == {"prices"} and len(only) == 1000


def test_phrases_join_words_of_the_list():
    words = ["사람", "시간", "오늘", "날씨", "3개", "우리나라말을"]
    from synth.text import GeneratedSettings, generate

    only, kinds = generate(GeneratedSettings(share=0.5, numbers=0, dates=0, times=0, prices=0, phones=0, latin=0,
                                             mixed=0, phrases=1), 60, 3, set(CHARSET), 25, set(words))
    assert set(kinds) == {"phrases"} and len(only) == 60 == len(set(only))
    parts = [p.split(" ") for p in only]
    assert {len(p) for p in parts} == {2, 3}
    assert {w for p in parts for w in p} <= {"사람", "시간", "오늘", "날씨"}  # Hangul words of up to four syllables


def test_generated_share_needs_a_kind():
    from pydantic import ValidationError

    from synth.text import GeneratedSettings

    with pytest.raises(ValidationError, match="needs a kind with a weight above 0"):
        GeneratedSettings(share=0.1, numbers=0, dates=0, times=0, prices=0, phones=0, latin=0, mixed=0)


def test_word_list_names_a_bundled_source_and_reports_generated_and_coverage():
    from synth.inputs import word_list
    from synth.render_settings import RenderSettings

    url, words, report = word_list(RenderSettings(words="frequency", generated={"share": 0.1}), CHARSET)
    assert url.endswith("words_ko_freq.txt") and len(words) == report["kept"] + sum(report["generated"].values())
    assert report["coverage"]["covered"] == report["coverage"]["syllables"] == 913
    url, words, report = word_list(RenderSettings(), CHARSET)
    assert url == BUNDLED_WORDS and report["generated"] == {} and len(words) == 8300


def test_covering_words_draw_every_syllable_n_times():
    from collections import Counter

    from synth.coverage import covering_words, hangul

    syllables = hangul(CHARSET)
    words = ["가나다", "가나", "라", "사랑", "사랑해", "hello", "3개"]
    used = set("".join(words)) & syllables
    for n in (1, 2, 3):
        cover = covering_words(words, syllables, n)
        counts = Counter(c for w in cover for c in w if c in syllables)
        assert set(counts) == used and min(counts.values()) >= n
    assert covering_words(words, syllables, 1)[:2] == ["가나", "3개"]  # short ones first, in the list's order
    assert covering_words(words, syllables, 0) == []


def test_train_syllable_draws_sets_the_training_split_alone(tmp_path):
    from collections import Counter

    from synth.coverage import hangul
    from synth.render_settings import RenderSettings
    from synth.shards import first_words

    words = ["가나다", "가나", "라", "사랑", "사랑해", "hello", "3개"]
    path = write(tmp_path, "".join(w + "\n" for w in words).encode())  # as the words stage writes it
    fonts = [{"sha256": "a", "covered": "".join(set("".join(words)))}]
    settings = RenderSettings(min_syllable_draws=1, train_syllable_draws=4)
    per_split = {s: first_words(settings, {"url": path}, fonts, [100], s, CHARSET)["a"]
                 for s in ("train", "val", "test")}
    used = set("".join(words)) & hangul(CHARSET)
    for split, n in (("train", 4), ("val", 1), ("test", 1)):
        counts = Counter(c for w in per_split[split] for c in w if c in used)
        assert set(counts) == used and min(counts.values()) == n, split
    assert per_split["val"] == per_split["test"] == first_words(
        RenderSettings(min_syllable_draws=1), {"url": path}, fonts, [100], "val", CHARSET)["a"]
    assert first_words(RenderSettings(train_syllable_draws=2), {"url": path}, fonts, [100], "val", CHARSET) == {}


def test_deal_gives_each_word_to_a_font_that_draws_it_and_has_room():
    from synth.coverage import deal

    fonts = [("a", "가나다라", 2), ("b", "가나사랑", 5), ("c", "가나다라사랑", 0)]
    dealt, undealt = deal(["가나", "다라", "사랑", "가나", "라", "해"], fonts)
    assert dealt == {"a": ["다라", "라"], "b": ["가나", "사랑", "가나"], "c": []}
    assert undealt == ["해"]  # no font draws it
    dealt, undealt = deal(["다라"] * 3, fonts)
    assert dealt["a"] == ["다라", "다라"] and undealt == ["다라"]  # a is full, b cannot draw it
