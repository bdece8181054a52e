"""The font catalogue's Debian and npm sources, their opt-in selection, the npm fetcher, the reserved families."""

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
from collections import Counter

import pytest
import yaml

from hwocr.errors import HwocrError
from synth import npm_fonts
from synth.font_pool import (
    DEFAULT_ROOT,
    FontPoolError,
    FontPoolSettings,
    load_catalogue,
    pool_entries,
    read_catalogue,
    select_pool,
)
from synth.fonts import RESERVED_FAMILIES, discover_fonts, inspect_font, reserved_family

BASE_PACKAGES = ["fonts-nanum", "fonts-nanum-extra", "fonts-unfonts-core", "fonts-unfonts-extra", "fonts-alee"]
PEN = f"{DEFAULT_ROOT}/nanum/NanumPen.ttf"
needs_pen = pytest.mark.skipif(not os.path.isfile(PEN), reason="fonts-nanum-extra not installed")
HANGUL = "".join(chr(c) for c in range(0xAC00, 0xD7A4))


def installed(package: str) -> bool:
    if not shutil.which("dpkg-query"):
        return False
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return out.returncode == 0 and "ok installed" in out.stdout


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def write_catalogue(tmp_path, fonts, name="cat.yaml", **top):
    p = tmp_path / name
    p.write_text(yaml.safe_dump({**top, "fonts": fonts}, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(p)


def npm_entry(file="@test/hand@1.0.0/files/hand-korean-400-normal.ttf", sha256="0" * 64, **kw):
    package, rest = file.rsplit("@", 1)
    return {"file": file, "package": package, "source": "npm", "version": rest.split("/", 1)[0], "sha256": sha256,
            "family": "Test Hand", "style": "handwriting", "family_group": "test-hand", "hangul": 11172, **kw}


# ------------------------------------------------------------------------------------------- the bundled catalogue


def test_bundled_catalogue_sources_counts_and_fields():
    entries, defaults = read_catalogue()
    assert defaults == [f"debian:{p}" for p in BASE_PACKAGES]
    usable = [e for e in entries if not e.exclude]
    by = Counter((e.source, e.style) for e in usable)
    assert by == {("debian", "handwriting"): 12, ("debian", "print"): 84,
                  ("npm", "handwriting"): 3, ("npm", "print"): 48}
    assert len({e.family_group for e in usable if e.style == "handwriting"}) == 10
    # every entry says where it comes from, at which version, under which licence
    assert all(e.version and e.licence for e in entries)
    assert all(e.sha256 for e in entries if e.source == "npm")
    groups = {e.family_group: e.style for e in usable}
    assert all(groups[e.family_group] == e.style for e in usable)  # a group never mixes styles
    assert all(e.hangul >= 2350 for e in usable)
    # reserved families never appear, under any spelling
    assert not [e.file for e in entries if reserved_family(e.family, e.family_group, e.package, e.file)]


def test_duplicates_across_sources_share_a_family_group():
    by_file = {os.path.basename(e.file): e for e in load_catalogue()}
    # Google's names for Woowa's fonts, Noto CJK KR weights, WenQuanYi Micro Hei's Droid-derived Hangul, Eco cuts
    assert by_file["BMYEONSUNG_ttf.ttf"].family_group == "yeon-sung"
    assert by_file["BMJUA_ttf.ttf"].family_group == "jua"
    assert by_file["NotoSansCJK-Regular.ttc"].family_group == by_file["NotoSansCJK-Bold.ttc"].family_group
    assert by_file["wqy-microhei.ttc"].family_group == by_file["DroidSansFallback.ttf"].family_group
    assert by_file["NanumGothicEcoBold.ttf"].family_group == by_file["NanumGothicEcoR.ttf"].family_group
    assert by_file["NanumGothicEco.ttf"].exclude  # same bytes as NanumGothicEcoR.ttf
    assert {by_file[f].style for f in ("BMYEONSUNG_ttf.ttf", "BMKIRANGHAERANG-TTF.ttf",
                                       "hi-melody-korean-400-normal.woff2", "stylish-korean-400-normal.woff2",
                                       "BlackAndWhitePicture_400Regular.ttf")} == {"handwriting"}
    assert by_file["SongMyung_400Regular.ttf"].style == "print"
    assert by_file["LXGWWenKai-Regular.ttf"].style == "print"


def test_default_pool_keeps_the_five_base_packages():
    """Today's presets select what they did: the new entries are opt-in through pool.sources."""
    base = pool_entries(FontPoolSettings())
    assert len(base) == 61 and {e.package for e in base} == set(BASE_PACKAGES)
    assert {e.package for e in pool_entries(FontPoolSettings(sources=["debian"]))} > set(BASE_PACKAGES)
    every = pool_entries(FontPoolSettings(sources=["all"]))
    assert len(every) == len(load_catalogue())
    hi = pool_entries(FontPoolSettings(sources=["npm:@fontsource/hi-melody", "debian:fonts-nanum-extra"]))
    assert {e.source_key for e in hi} == {"npm:@fontsource/hi-melody", "debian:fonts-nanum-extra"}


def test_unknown_source_and_left_out_held_out_group_are_refused():
    with pytest.raises(FontPoolError, match=r"pool.sources: 'debian:fonts-woowa' names no source .*did you mean "
                                            r"'debian:fonts-woowa-bm'"):
        pool_entries(FontPoolSettings(sources=["debian:fonts-woowa"]))
    with pytest.raises(FontPoolError, match=r"held_out_groups: family_group 'hi-melody' comes from "
                                            r"npm:@fontsource/hi-melody, which pool.sources .* leaves out"):
        select_pool(FontPoolSettings(held_out_groups=["hi-melody"]))


@pytest.mark.parametrize("package", sorted({e.package for e in load_catalogue() if e.source == "debian"}))
def test_installed_debian_package_matches_its_entries(package):
    """Every font file an installed package ships is an entry (excluded ones with a reason), and every entry's file
    exists. CI installs every package (scripts/bootstrap.sh), so CI checks them all."""
    if not installed(package):
        pytest.skip(f"{package} is not installed")
    entries = [e for e in load_catalogue() if e.source == "debian" and e.package == package]
    files = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout.split()
    fonts = {f for f in files if f.lower().endswith((".ttf", ".otf", ".ttc")) and os.path.isfile(f)}
    assert {os.path.realpath(e.location()) for e in entries} == {os.path.realpath(f) for f in fonts}


def test_fetched_npm_files_match_their_sha256():
    """Where the npm fonts are fetched (scripts/bootstrap.sh), every file is there and is the pinned one."""
    entries = [e for e in load_catalogue() if e.source == "npm"]
    there = [e for e in entries if os.path.isfile(e.location())]
    if not there:
        pytest.skip("the npm fonts are not fetched (python -m synth.npm_fonts)")
    assert [e.file for e in there if sha(e.location()) != e.sha256] == []
    assert [e.file for e in entries if e not in there] == []


@pytest.mark.parametrize("name, drawn", [("woowa-bm/BMYEONSUNG_ttf.ttf", 2436), ("baekmuk/dotum.ttf", 2350),
                                         pytest.param("baekmuk/gulim.ttf", 11172, marks=pytest.mark.slow)])
def test_drawn_coverage_matches_the_catalogue(name, drawn):
    """hangul counts drawn glyphs: Woowa's and Baekmuk Dotum's cmaps claim all 11,172 syllables."""
    path = f"{DEFAULT_ROOT}/{name}"
    if not os.path.isfile(path):
        pytest.skip(f"{path} is not installed")
    entry = {e.file: e for e in load_catalogue()}[name]
    assert entry.hangul == drawn == inspect_font(path, HANGUL)["hangul"]
    ttlib = pytest.importorskip("fontTools.ttLib")
    cmap = ttlib.TTFont(path, lazy=True).getBestCmap()
    assert sum(0xAC00 <= c <= 0xD7A3 for c in cmap) == 11172


# ------------------------------------------------------------------------------------------- reserved families


@pytest.mark.parametrize("field, value", [
    ("file", "GamjaFlower_400Regular.ttf"), ("file", "fonts/gamja-flower-korean-400-normal.woff2"),
    ("family", "Gamja Flower"), ("family", "POOR STORY"), ("family_group", "east_sea_dokdo"),
    ("package", "@fontsource/cute-font"),
])
def test_reserved_family_in_the_catalogue_is_refused(tmp_path, field, value):
    e = {"file": "x/Hand.ttf", "package": "fonts-test", "family": "Hand", "style": "handwriting",
         "family_group": "hand", "hangul": 11172, field: value}
    cat = write_catalogue(tmp_path, [e])
    with pytest.raises(FontPoolError, match=r"cat\.yaml: entry 1 .*: '(Gamja Flower|Poor Story|East Sea Dokdo|"
                                            r"Cute Font)' is a reserved font family"):
        load_catalogue(cat)


@pytest.mark.parametrize("name", ["GamjaFlower-Regular.ttf", "gaegu-korean-700-normal.woff2", "Single Day.otf",
                                  "dokdo.ttf"])
def test_reserved_family_in_render_fonts_is_refused(tmp_path, name):
    """A made-up file with a reserved family's name (never the real font), as a file, in a folder and by glob."""
    (tmp_path / name).write_bytes(b"not a font: refused by its name before it is read")
    for spec in (str(tmp_path / name), str(tmp_path), str(tmp_path / "*")):
        with pytest.raises(HwocrError, match=r"render.fonts: font file .* is a reserved font family"):
            discover_fonts(spec)


def test_reserved_names_cover_every_spelling():
    assert len(RESERVED_FAMILIES) == 7
    for name in ("gamja-flower", "GamjaFlower", "Gamja Flower", "gamja_flower", "@expo-google-fonts/gamja-flower"):
        assert reserved_family(name) == "Gamja Flower"
    assert reserved_family("East Sea Dokdo") in ("East Sea Dokdo", "Dokdo")
    assert reserved_family("NanumPen.ttf", "Hi Melody", "stylish") is None


# ------------------------------------------------------------------------------------------- npm files in a pool


@needs_pen
def test_npm_file_with_another_sha256_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HWOCR_NPM_FONTS", str(tmp_path / "npm"))
    e = npm_entry(sha256="ab" * 32)
    target = tmp_path / "npm" / e["file"]
    target.parent.mkdir(parents=True)
    shutil.copyfile(PEN, target)
    cat = write_catalogue(tmp_path, [e])
    with pytest.raises(FontPoolError, match=r"font file .*/@test/hand@1\.0\.0/files/hand-korean-400-normal\.ttf has "
                                            r"sha256 [0-9a-f]{64}, not the catalogue's (ab){32} "
                                            r".*npm:@test/hand@1\.0\.0"):
        select_pool(FontPoolSettings(catalogue=cat))
    e["sha256"] = sha(PEN)
    pool = select_pool(FontPoolSettings(catalogue=write_catalogue(tmp_path, [e], "ok.yaml")))
    assert [p.path for p in pool["train"]] == [str(target)]


def test_npm_file_not_fetched_is_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HWOCR_NPM_FONTS", str(tmp_path / "npm"))
    cat = write_catalogue(tmp_path, [npm_entry()])
    with pytest.raises(FontPoolError, match=r"font file .*/npm/@test/hand@1\.0\.0/files/hand-korean-400-normal\.ttf "
                                            r"does not exist .*python -m synth\.npm_fonts.*@test/hand@1\.0\.0"):
        select_pool(FontPoolSettings(catalogue=cat))


@pytest.mark.parametrize("bad, match", [
    ({"version": None}, "an npm entry needs version"),
    ({"sha256": None}, "an npm entry needs version .* and sha256"),
    ({"sha256": "xyz"}, "sha256: String should match pattern"),
    ({"file": "@test/hand@2.0.0/a.ttf"}, r"an npm entry's file is @test/hand@1\.0\.0/PATH-IN-PACKAGE"),
])
def test_npm_entry_errors(tmp_path, bad, match):
    e = npm_entry() | bad
    if "file" in bad:
        e["version"] = "1.0.0"
    with pytest.raises(FontPoolError, match=match):
        load_catalogue(write_catalogue(tmp_path, [e]))


# ------------------------------------------------------------------------------------------- the fetcher


def tarball(path, files: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_fetch_extracts_checks_and_caches(tmp_path, caplog):
    good, other = b"font bytes of the hand", b"another file"
    src = tarball(tmp_path / "hand.tgz", {"files/hand-korean-400-normal.ttf": good, "files/other.ttf": other,
                                          "package.json": b"{}"})
    calls = []

    def packer(spec, folder):
        calls.append(spec)
        return shutil.copy(src, folder)

    entries = load_catalogue(write_catalogue(tmp_path, [
        npm_entry(sha256=hashlib.sha256(good).hexdigest()),
        npm_entry("@test/hand@1.0.0/files/other.ttf", "0" * 64, family_group="other"),  # wrong sha256
        npm_entry("@test/hand@1.0.0/files/gone.ttf", "1" * 64, family_group="gone"),  # not in the package
        {"file": "nanum/NanumPen.ttf", "package": "fonts-nanum-extra", "family": "Pen", "style": "handwriting",
         "family_group": "pen", "hangul": 11172},  # Debian entries are not fetched
    ]))
    dest = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger="synth.npm_fonts"):
        report = npm_fonts.fetch(entries, str(dest), packer)
    assert calls == ["@test/hand@1.0.0"]  # one npm pack per package
    assert report.fetched == ["@test/hand@1.0.0/files/hand-korean-400-normal.ttf"]
    assert set(report.failed) == {"@test/hand@1.0.0/files/other.ttf", "@test/hand@1.0.0/files/gone.ttf"}
    assert "sha256" in report.failed["@test/hand@1.0.0/files/other.ttf"]
    assert "has no file files/gone.ttf" in report.failed["@test/hand@1.0.0/files/gone.ttf"]
    assert (dest / "@test/hand@1.0.0/files/hand-korean-400-normal.ttf").read_bytes() == good
    assert not (dest / "@test/hand@1.0.0/files/other.ttf").exists()  # a wrong file never lands
    assert sorted(os.listdir(dest)) == ["@test"]  # no staging left behind
    assert "npm font @test/hand@1.0.0/files/other.ttf skipped" in caplog.text
    again = npm_fonts.fetch(entries[:1], str(dest), packer)
    assert again.cached == [entries[0].file] and not again.fetched and calls == ["@test/hand@1.0.0"]


def test_fetch_failure_warns_and_skips(tmp_path, caplog):
    def packer(spec, folder):
        raise OSError(f"npm pack {spec} failed: 404 Not Found")

    entries = load_catalogue(write_catalogue(tmp_path, [npm_entry()]))
    with caplog.at_level(logging.WARNING, logger="synth.npm_fonts"):
        report = npm_fonts.fetch(entries, str(tmp_path / "cache"), packer)
    assert report.failed == {entries[0].file: "@test/hand@1.0.0: npm pack @test/hand@1.0.0 failed: 404 Not Found"}
    assert "skipped" in caplog.text and "1 failed" in report.summary()


@pytest.mark.skipif(not shutil.which("npm"), reason="npm not installed")
def test_fetch_with_npm_pack_of_a_local_folder(tmp_path):
    """The real `npm pack`, offline: a local package folder stands in for the registry."""
    pkg = tmp_path / "pkg"
    (pkg / "files").mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"name": "@test/hand", "version": "1.0.0"}))
    (pkg / "files" / "hand-korean-400-normal.ttf").write_bytes(b"hand")
    entries = load_catalogue(write_catalogue(tmp_path, [npm_entry(sha256=hashlib.sha256(b"hand").hexdigest())]))
    report = npm_fonts.fetch(entries, str(tmp_path / "cache"), lambda _, folder: npm_fonts.npm_pack(str(pkg), folder))
    assert report.fetched == [entries[0].file] and not report.failed
    with pytest.raises(OSError, match=r"npm pack .*/no-such-folder failed"):
        npm_fonts.npm_pack(str(tmp_path / "no-such-folder"), str(tmp_path))


def test_fetch_cli_reports_and_strict_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(npm_fonts, "npm_pack", lambda spec, folder: (_ for _ in ()).throw(OSError("offline")))
    cat = write_catalogue(tmp_path, [npm_entry()])
    assert npm_fonts.main(["--catalogue", cat, "--dest", str(tmp_path / "c")]) == 0
    assert "0 fetched, 0 already cached, 1 failed" in capsys.readouterr().out
    assert npm_fonts.main(["--catalogue", cat, "--dest", str(tmp_path / "c"), "--strict"]) == 1
    assert npm_fonts.main(["--catalogue", str(tmp_path / "none.yaml")]) == 2


def test_a_syllable_raqm_assembles_from_jamo_is_not_drawn():
    """Orbit lacks 펲: raqm draws it as conjoining jamo (ink, no missing-glyph box), the plain layout as the box."""
    orbit = {e.family: e for e in load_catalogue()}["Orbit"]
    if not os.path.isfile(orbit.location()):
        pytest.skip("the npm fonts are not fetched (python -m synth.npm_fonts)")
    info = inspect_font(orbit.location(), "가펲똠A")
    assert info["covered"] == "가똠A" and info["missing"] == "펲"


@pytest.mark.slow
def test_drawn_coverage_of_a_woff2_and_an_npm_font_matches_the_catalogue():
    by_family = {e.family: e for e in load_catalogue()}
    entries = [by_family["Hi Melody"], by_family["Orbit"], by_family["SUIT"]]
    if not all(os.path.isfile(e.location()) for e in entries):
        pytest.skip("the npm fonts are not fetched (python -m synth.npm_fonts)")
    assert [inspect_font(e.location(), HANGUL)["hangul"] for e in entries] == [e.hangul for e in entries] == \
        [11172, 2780, 2668]
