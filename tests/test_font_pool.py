import glob
import os
import shutil
import subprocess
from collections import Counter

import pytest
import yaml
from pydantic import ValidationError

from synth.font_pool import (
    BUNDLED_CATALOGUE,
    DEFAULT_ROOT,
    FontPoolError,
    FontPoolSettings,
    check_pool,
    load_catalogue,
    pool_entries,
    select_pool,
)
from synth.shards import split_count

PACKAGE_DIRS = ("nanum", "unfonts-core", "unfonts-extra", "alee")
LATIN = f"{DEFAULT_ROOT}/dejavu/DejaVuSans.ttf"
HANDWRITING = {
    "nanum/NanumPen.ttf", "nanum/NanumBrush.ttf", "unfonts-core/UnPilgi.ttf", "unfonts-core/UnPilgiBold.ttf",
    "unfonts-extra/UnPilgia.ttf", "unfonts-extra/UnPen.ttf", "unfonts-extra/UnPenheulim.ttf",
    "unfonts-extra/UnVada.ttf", "alee/Eunjin.ttf", "alee/EunjinNakseo.ttf",
}
BASE_PACKAGES = ("fonts-nanum", "fonts-nanum-extra", "fonts-unfonts-core", "fonts-unfonts-extra", "fonts-alee")
ECO_FILES = ("NanumGothicEco.", "NanumGothicEcoBold", "NanumGothicEcoExtraBold", "NanumMyeongjoEco.",
             "NanumMyeongjoEcoBold", "NanumMyeongjoEcoExtraBold")
needs_fonts = pytest.mark.skipif(not all(os.path.isdir(f"{DEFAULT_ROOT}/{d}") for d in PACKAGE_DIRS),
                                 reason="Debian Korean font packages not installed")
needs_latin = pytest.mark.skipif(not os.path.isfile(LATIN), reason="fonts-dejavu-core not installed")


def write_catalogue(tmp_path, fonts, name="cat.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump({"fonts": fonts}, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(p)


def entry(file, group, style="handwriting", **kw):
    return {"file": file, "package": "fonts-test", "family": os.path.basename(file), "style": style,
            "family_group": group, "hangul": 11172, **kw}


# ---------------------------------------------------------------------------------------------------- catalogue


def test_bundled_catalogue_is_valid_and_tagged():
    entries = pool_entries(FontPoolSettings())  # the five base packages (the others: tests/test_font_catalogue.py)
    assert len(entries) == 61 and len({e.file for e in entries}) == 61
    assert {e.file for e in entries if e.style == "handwriting"} == HANDWRITING
    assert Counter(e.style for e in entries) == {"handwriting": 10, "print": 51}
    groups = {e.family_group: e.style for e in entries}
    assert {g for g, s in groups.items() if s == "handwriting"} == {
        "nanum-handwriting", "un-pilgi", "un-pen", "un-vada", "alee-eunjin"}
    # a family_group never mixes styles, every file is usable, weights default to 1
    assert all(groups[e.family_group] == e.style for e in entries)
    assert not any(e.exclude for e in entries) and all(e.weight == 1.0 for e in entries)
    assert all(e.hangul >= 2350 for e in entries)
    by_file = {e.file: e for e in entries}
    assert by_file["nanum/NanumSquareR.ttf"].hangul == 2479 and by_file["nanum/NanumPen.ttf"].hangul == 11172
    assert by_file["alee/Guseul.ttf"].ascii == 0
    assert {e.family_group for e in entries if e.file.startswith("nanum/NanumSquare")} == {"nanum-square"}
    assert by_file["nanum/NanumBarunpenR.ttf"].style == "print"
    assert by_file["unfonts-core/UnGungseo.ttf"].style == "print"


@needs_fonts
def test_bundled_catalogue_lists_every_installed_file_with_its_package():
    entries = [e for e in load_catalogue() if e.package in BASE_PACKAGES]
    installed = {os.path.relpath(p, DEFAULT_ROOT) for d in PACKAGE_DIRS
                 for p in glob.glob(f"{DEFAULT_ROOT}/{d}/*") if p.lower().endswith((".ttf", ".otf", ".ttc"))
                 and not os.path.basename(p).startswith(ECO_FILES)}  # fonts-nanum-eco also installs into nanum/
    assert {e.file for e in entries} == installed
    if shutil.which("dpkg-query"):
        out = subprocess.run(["dpkg-query", "-S", *(f"{DEFAULT_ROOT}/{e.file}" for e in entries)],
                             capture_output=True, text=True, check=True).stdout
        owner = {line.split(": ", 1)[1]: line.split(":", 1)[0] for line in out.splitlines()}
        assert {e.file: e.package for e in entries} == {os.path.relpath(p, DEFAULT_ROOT): o for p, o in owner.items()}


@pytest.mark.parametrize("text, match", [
    ("fonts: [\n  {file: a.ttf\n", r"cat\.yaml line \d+: not valid YAML"),
    ("- a\n- b\n", r"cat\.yaml: expected a mapping with a `fonts:` list"),
    ("fonts: []\n", r"cat\.yaml: the `fonts:` list is empty"),
    ("fonts: [x.ttf]\nroot: /x\n", r"cat\.yaml: unknown top-level key\(s\) root"),
    ("fonts:\n  - just-a-string.ttf\n", r"cat\.yaml: entry 1 \(line 2\): expected a mapping"),
])
def test_catalogue_shape_errors(tmp_path, text, match):
    p = tmp_path / "cat.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(FontPoolError, match=match):
        load_catalogue(str(p))


@pytest.mark.parametrize("bad, match", [
    ({"style": "hand"},
     r"entry 2 \(line \d+\) file b\.ttf: style: Input should be 'handwriting' or 'print' \(got 'hand'\)"),
    ({"colour": "red"}, r"entry 2 \(line \d+\) file b\.ttf: colour: unknown field"),
    ({"weight": -1}, r"file b\.ttf: weight: Input should be greater than or equal to 0"),
    ({"hangul": 20000}, r"file b\.ttf: hangul: Input should be less than or equal to 11172"),
    ({"exclude": True}, r"file b\.ttf: exclude: true needs a reason$"),
    ({"file": "b.pfb"}, r"file b\.pfb: file: 'b\.pfb' is not a \.ttf, \.otf, \.ttc, \.woff or \.woff2 file$"),
    ({"file": "a.ttf"}, r"entry 2 \(line \d+\) file a\.ttf: listed twice \(first as entry 1\)"),
])
def test_catalogue_entry_errors_name_file_and_entry(tmp_path, bad, match):
    path = write_catalogue(tmp_path, [entry("a.ttf", "g"), {**entry("b.ttf", "g"), **bad}])
    with pytest.raises(FontPoolError, match=r"font catalogue .*cat\.yaml: (entry 2 \(line \d+\) )?" + match):
        load_catalogue(path)


def test_catalogue_missing_field_and_file(tmp_path):
    e = entry("b.ttf", "g")
    del e["family_group"]
    with pytest.raises(FontPoolError, match=r"entry 1 .*file b\.ttf: family_group: Field required"):
        load_catalogue(write_catalogue(tmp_path, [e]))
    with pytest.raises(FontPoolError, match=r"font catalogue .*nope\.yaml does not exist"):
        load_catalogue(str(tmp_path / "nope.yaml"))


# ---------------------------------------------------------------------------------------------------- settings


def test_settings_fields_are_described_and_validated():
    assert all(f.description for f in FontPoolSettings.model_fields.values())
    s = FontPoolSettings()
    assert (s.catalogue, s.print_ratio, s.weights, s.held_out_groups) == (None, 0.0, {}, [])
    for bad in ({"print_ratio": 1.5}, {"print_ratio": -0.1}, {"weights": {"NanumPen.ttf": -1}},
                {"fonts": "x"}, {"weights": {"x": float("nan")}}):
        with pytest.raises(ValidationError):
            FontPoolSettings(**bad)
    assert FontPoolSettings(held_out_groups=["un-pen", "un-pen"]).held_out_groups == ["un-pen"]


# ---------------------------------------------------------------------------------------------------- selection


@needs_fonts
def test_default_pool_is_handwriting_only():
    pool = select_pool(FontPoolSettings())
    assert pool["test"] == []
    assert {p.file for p in pool["train"]} == HANDWRITING
    assert all(os.path.isabs(p.path) and os.path.isfile(p.path) for p in pool["train"])
    assert all(p.effective_weight == pytest.approx(0.1) for p in pool["train"])
    assert [p.file for p in pool["train"]] == sorted(p.file for p in pool["train"])


@needs_fonts
@pytest.mark.parametrize("ratio", [0.25, 0.5, 1.0])
def test_print_ratio_is_respected(ratio):
    pool = select_pool(FontPoolSettings(print_ratio=ratio))
    mass = Counter()
    for p in pool["train"]:
        mass[p.style] += p.effective_weight
    assert mass["print"] == pytest.approx(ratio) and mass["handwriting"] == pytest.approx(1 - ratio)
    assert sum(1 for p in pool["train"] if p.style == "print") == (51 if ratio else 0)
    for total in (1000, 100_000):  # as plan_shards splits a split's images
        counts = split_count(total, [p.effective_weight for p in pool["train"]])
        got = sum(c for p, c in zip(pool["train"], counts) if p.style == "print")
        assert sum(counts) == total and abs(got - ratio * total) <= 1


@needs_fonts
def test_held_out_groups_go_to_test_only():
    pool = select_pool(FontPoolSettings(print_ratio=0.2, held_out_groups=["un-pen", "nanum-square"]))
    test_files = {p.file for p in pool["test"]}
    assert {"unfonts-extra/UnPen.ttf", "unfonts-extra/UnPenheulim.ttf", "nanum/NanumSquare_acR.ttf"} <= test_files
    assert {p.family_group for p in pool["test"]} == {"un-pen", "nanum-square"}
    assert not {p.family_group for p in pool["train"]} & {"un-pen", "nanum-square"}
    for split in ("train", "test"):
        assert sum(p.effective_weight for p in pool[split]) == pytest.approx(1.0)
    assert sum(p.effective_weight for p in pool["test"] if p.style == "print") == pytest.approx(0.2)


@needs_fonts
def test_weight_overrides_by_file_family_and_group():
    pool = select_pool(FontPoolSettings(weights={
        "un-pilgi": 0.5, "UnPilgiBold.ttf": 2.0, "Nanum Brush Script": 0, "nanum/NanumPen.ttf": 3.0}))
    w = {os.path.basename(p.file): p.effective_weight for p in pool["train"]}
    assert "NanumBrush.ttf" not in w  # weight 0 drops the font
    assert w["NanumPen.ttf"] / w["UnPen.ttf"] == pytest.approx(3.0)
    assert w["UnPilgiBold.ttf"] / w["UnPilgi.ttf"] == pytest.approx(4.0)  # the file key beats the group key
    assert w["UnPilgia.ttf"] / w["UnVada.ttf"] == pytest.approx(0.5)
    assert sum(w.values()) == pytest.approx(1.0)


def test_unknown_weight_key_is_refused_with_suggestion():
    with pytest.raises(FontPoolError, match=r"weights: 'NanumPenn\.ttf' names no file, family or family_group .*"
                                            r"did you mean 'NanumPen\.ttf'"):
        select_pool(FontPoolSettings(weights={"NanumPenn.ttf": 1}), check=False)


def test_print_ratio_zero_with_no_handwriting_left_is_refused():
    groups = ["nanum-handwriting", "un-pilgi", "un-pen", "un-vada", "alee-eunjin"]
    with pytest.raises(FontPoolError, match=r"print_ratio=0\.0 gives handwriting fonts all the training images"):
        select_pool(FontPoolSettings(held_out_groups=groups), check=False)


# ---------------------------------------------------------------------------------------------------- refusals


def test_unknown_held_out_group_suggests_close_matches():
    with pytest.raises(FontPoolError, match=r"held_out_groups: 'un-pens' is not a family_group of font catalogue "
                                            r".*korean_fonts\.yaml; did you mean 'un-pen'"):
        select_pool(FontPoolSettings(held_out_groups=["un-pens"]))
    with pytest.raises(FontPoolError, match=r"'Nanum-Handwriting' .*did you mean 'nanum-handwriting'"):
        check_pool({"train": [], "test": []}, FontPoolSettings(held_out_groups=["Nanum-Handwriting"]))


@needs_latin
def test_handwriting_font_without_hangul_is_refused(tmp_path):
    cat = write_catalogue(tmp_path, [entry(LATIN, "dejavu")])
    with pytest.raises(FontPoolError, match=r"font file .*/dejavu/DejaVuSans\.ttf is tagged handwriting but draws "
                                            r"none of the Hangul probe syllables .*it lacks Hangul"):
        select_pool(FontPoolSettings(catalogue=cat))


@needs_fonts
def test_held_out_group_in_training_is_refused():
    settings = FontPoolSettings(held_out_groups=["un-pen"])
    pool = select_pool(settings)
    check_pool(pool, settings)  # a clean pool passes
    leaky = {"train": pool["train"] + pool["test"][:1], "test": pool["test"][1:]}
    with pytest.raises(FontPoolError, match=r"held-out family_group 'un-pen' is also in training: font file "
                                            r".*/unfonts-extra/UnPen\.ttf"):
        check_pool(leaky, settings)
    # without settings, a group present in both splits is still caught
    both = {"train": pool["train"] + pool["test"][:1], "test": pool["test"]}
    with pytest.raises(FontPoolError, match=r"held-out family_group 'un-pen' is also in training"):
        check_pool(both)


@needs_fonts
def test_held_out_font_copied_into_training_is_refused_by_content(tmp_path):
    copy = tmp_path / "fonts" / "MyHand.ttf"
    copy.parent.mkdir()
    shutil.copyfile(f"{DEFAULT_ROOT}/unfonts-core/UnPilgi.ttf", copy)
    cat = write_catalogue(tmp_path, [entry("unfonts-core/UnPilgi.ttf", "un-pilgi"), entry(str(copy), "my-hand"),
                                     entry("unfonts-extra/UnVada.ttf", "un-vada")])
    with pytest.raises(FontPoolError, match=r"training font file .*/MyHand\.ttf has the same content \(sha256 "
                                            r"[0-9a-f]{12}\) as held-out test font file .*/UnPilgi\.ttf"):
        select_pool(FontPoolSettings(catalogue=cat, held_out_groups=["un-pilgi"]))


def test_missing_font_file_is_refused(tmp_path):
    cat = write_catalogue(tmp_path, [entry("nanum/NoSuchPen.ttf", "ghost", package="fonts-ghost")])
    with pytest.raises(FontPoolError, match=r"font file .*/nanum/NoSuchPen\.ttf does not exist \(catalogue file "
                                            r"nanum/NoSuchPen\.ttf, family_group ghost\).*apt-get install fonts-ghost"):
        select_pool(FontPoolSettings(catalogue=cat))
    with pytest.raises(FontPoolError, match=r"font file .*/empty-root/alee/Eunjin\.ttf .*does not exist"):
        select_pool(FontPoolSettings(), root=str(tmp_path / "empty-root"))


def test_excluded_entries_stay_out(tmp_path):
    cat = write_catalogue(tmp_path, [entry("a/Yet.ttf", "yet", exclude=True, reason="Old Hangul jamo only"),
                                     entry("nanum/NanumPen.ttf", "pen")])
    pool = select_pool(FontPoolSettings(catalogue=cat), check=False)
    assert [p.file for p in pool["train"]] == ["nanum/NanumPen.ttf"]
    with pytest.raises(FontPoolError, match=r"every font of family_group 'yet' is marked exclude: true"):
        select_pool(FontPoolSettings(catalogue=cat, held_out_groups=["yet"]), check=False)


def test_bundled_catalogue_path_is_in_package_data_dir():
    assert BUNDLED_CATALOGUE.endswith(os.path.join("synth", "data", "korean_fonts.yaml"))
    assert os.path.isfile(BUNDLED_CATALOGUE)
