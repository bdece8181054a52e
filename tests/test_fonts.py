import pytest

from conftest import FONTS
from hwocr.errors import HwocrError
from models.charset import load_charset
from synth.fonts import discover_fonts, inspect_font

CHARSET = load_charset("korean_g2")


def test_discover_folder_glob_and_list(tmp_path):
    (tmp_path / "a.TTF").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.otf").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert discover_fonts(str(tmp_path)) == [str(tmp_path / "a.TTF"), str(tmp_path / "sub" / "b.otf")]
    assert discover_fonts(str(tmp_path / "*.TTF")) == [str(tmp_path / "a.TTF")]
    assert discover_fonts([FONTS["pen"], FONTS["pen"]]) == [FONTS["pen"]]


def test_missing_font_file():
    with pytest.raises(HwocrError, match=r"font file '/nonexistent/x\.ttf' does not exist"):
        discover_fonts(["/nonexistent/x.ttf"])


def test_folder_without_fonts(tmp_path):
    with pytest.raises(HwocrError, match="holds no .ttf"):
        discover_fonts(str(tmp_path))


def test_corrupt_font_file(tmp_path):
    bad = tmp_path / "broken.ttf"
    bad.write_bytes(b"this is not a font" * 10)
    with pytest.raises(HwocrError, match=r"broken\.ttf: cannot be read as a font"):
        inspect_font(str(bad), CHARSET)


def test_render_level_coverage():
    pen = inspect_font(FONTS["pen"], CHARSET)
    assert pen["missing"] == "" and pen["hangul"] == 913
    guseul = inspect_font(FONTS["guseul"], CHARSET)
    assert guseul["hangul"] == 913
    assert "A" in guseul["missing"] and "7" in guseul["missing"] and "한" in guseul["covered"]
    latin = inspect_font(FONTS["latin"], CHARSET)
    assert latin["hangul"] == 0 and "A" in latin["covered"]


def test_remote_font_is_cached_by_content(tmp_path, monkeypatch):
    import fsspec

    from hwocr import hashing, storage
    from synth.fonts import survey

    monkeypatch.setattr(storage, "CACHE_DIR", str(tmp_path / "cache"))
    url = "memory://hwocr-fonts/Pen.TTF"
    with fsspec.open(url, "wb") as f, open(FONTS["pen"], "rb") as src:
        f.write(src.read())
    kept, _ = survey([url], "skip_words", CHARSET, set("가나"), "test")
    sha = hashing.sha256_url(url)
    assert kept[0]["path"] == str(tmp_path / "cache" / "fonts" / f"{sha}.ttf") and kept[0]["sha256"] == sha
