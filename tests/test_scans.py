"""synth/scans.py: stand-in scans of handwriting, their files and label formats, their boxes against the ink, their
determinism, and the fonts and folders they refuse."""

import csv
import hashlib
import json
import os
import re
import unicodedata

import cv2
import numpy as np
import pytest
from PIL import Image

from hwocr.errors import HwocrError
from synth.scans import BOX_MARGIN, CROP_MARGIN, families_fonts, make_scans

FONT_DIR = "/usr/share/fonts/truetype"
PEN = f"{FONT_DIR}/nanum/NanumPen.ttf"
BRUSH = f"{FONT_DIR}/nanum/NanumBrush.ttf"
PILGI = f"{FONT_DIR}/unfonts-core/UnPilgi.ttf"
GUSEUL = f"{FONT_DIR}/alee/Guseul.ttf"  # Hangul only: no digits or Latin letters
LATIN = f"{FONT_DIR}/dejavu/DejaVuSans.ttf"  # no Hangul at all
WORDS = ("한글 손글씨 안녕하세요 가나다 학교 사랑 바다 하늘 구름 나무 바람 햇빛 연필 공책 편지 우체국 도서관 시장 "
         "기차역 운동장 무지개 눈사람 고양이 강아지 할머니 선생님 친구들 주말 아침밥 저녁놀").split()
SIZE = (600, 800)
SMALL = {"pages": 4, "words_per_page": (4, 6), "page_size": SIZE}

pytestmark = pytest.mark.skipif(not all(os.path.exists(f) for f in (PEN, BRUSH, PILGI, GUSEUL, LATIN)),
                                reason="the Debian font packages (scripts/bootstrap.sh installs them) are missing")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("photo") / "scans")
    make_scans(out, [PEN, PILGI], WORDS, **SMALL)
    return out


@pytest.fixture(scope="module")
def flat(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("flat") / "scans")
    make_scans(out, [PEN, PILGI], WORDS, **SMALL, photo=False)
    return out


def files(root: str) -> dict[str, bytes]:
    found = {}
    for folder, _, names in os.walk(root):
        for n in names:
            path = os.path.join(folder, n)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def label_txt(root: str) -> list[tuple[str, list[dict]]]:
    with open(os.path.join(root, "pages", "Label.txt"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    return [(key, json.loads(boxes)) for key, boxes in (line.split("\t") for line in lines)]


def csv_rows(root: str) -> list[list[str]]:
    with open(os.path.join(root, "easyocr", "labels.csv"), encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_a_set_holds_exactly_its_files(photo):
    rows = csv_rows(photo)
    pages = [f"pages/page-{n:04d}.jpg" for n in range(1, 5)]
    crops = [f"easyocr/{n:04d}.png" for n in range(1, len(rows))]
    assert sorted(files(photo)) == sorted(pages + crops + ["pages/Label.txt", "easyocr/labels.csv",
                                                          "labelstudio.json", "manifest.json", "README.md"])
    assert os.listdir(os.path.dirname(photo)) == ["scans"]  # the temp folder it was built in was renamed
    for p in pages:
        with Image.open(os.path.join(photo, p)) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", SIZE)
    readme = open(os.path.join(photo, "README.md"), encoding="utf-8").read()
    assert "STAND-INS" in readme and "synthetic" in readme and "Label.txt" in readme and len(readme) < 2000


def test_label_txt_is_ppocrlabel(photo):
    raw = open(os.path.join(photo, "pages", "Label.txt"), encoding="utf-8").read()
    assert "\\u" not in raw and "한" in raw  # ensure_ascii=False
    pages = label_txt(photo)
    assert [key for key, _ in pages] == [f"pages/page-{n:04d}.jpg" for n in range(1, 5)]
    for _, boxes in pages:
        assert 4 <= len(boxes) <= 6
        for b in boxes:
            assert list(b) == ["transcription", "points", "difficult"] and b["difficult"] is False
            pts = np.array(b["points"])
            assert pts.shape == (4, 2) and all(type(v) is int for p in b["points"] for v in p)
            assert (pts >= 0).all() and (pts[:, 0] < SIZE[0]).all() and (pts[:, 1] < SIZE[1]).all()
            # tl, tr, br, bl: clockwise on screen (y down) is a positive shoelace area, and tl is the top-left
            x, y = pts[:, 0], pts[:, 1]
            assert np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)) > 0
            assert np.argmin(x + y) == 0 and np.argmax(x + y) == 2


def test_the_three_formats_and_the_manifest_agree(photo):
    pages = label_txt(photo)
    words = [b["transcription"] for _, boxes in pages for b in boxes]
    rows = csv_rows(photo)
    assert rows[0] == ["filename", "words"]
    assert [r[1] for r in rows[1:]] == words
    assert [r[0] for r in rows[1:]] == [f"{n:04d}.png" for n in range(1, len(words) + 1)]

    tasks = read_json(os.path.join(photo, "labelstudio.json"))
    assert [t["id"] for t in tasks] == [1, 2, 3, 4]
    ids = set()
    for n, (task, (key, boxes)) in enumerate(zip(tasks, pages), 1):
        assert re.fullmatch(rf"/data/upload/1/[0-9a-f]{{8}}-page-{n:04d}\.jpg", task["data"]["ocr"])
        assert task["data"]["ocr"].endswith(os.path.basename(key))
        (annotation,) = task["annotations"]
        assert annotation["id"] == n
        result = annotation["result"]
        assert len(result) == 3 * len(boxes)
        kind, tool, keys = ("polygon", "poly", {"points"}) if n % 2 == 0 else \
            ("rectangle", "bbox", {"x", "y", "width", "height", "rotation"})
        for k, b in enumerate(boxes):
            geo, label, text = result[3 * k: 3 * k + 3]
            assert [r["type"] for r in (geo, label, text)] == [kind, "labels", "textarea"]
            assert [r["from_name"] for r in (geo, label, text)] == [tool, "label", "transcription"]
            assert len({r["id"] for r in (geo, label, text)}) == 1 and len(geo["id"]) == 10
            ids.add(geo["id"])
            for r in (geo, label, text):
                assert (r["to_name"], r["original_width"], r["original_height"], r["image_rotation"]) == \
                    ("image", SIZE[0], SIZE[1], 0)
            assert set(geo["value"]) == keys
            assert label["value"] == {**geo["value"], "labels": ["Handwriting"]}
            assert text["value"] == {**geo["value"], "text": [b["transcription"]]}
            pts = np.array(b["points"], dtype=float)
            if kind == "polygon":
                back = np.array(geo["value"]["points"]) * np.array(SIZE) / 100
                assert np.abs(back - pts).max() < 1e-3
            else:
                v = geo["value"]
                back = np.array([v["x"], v["y"], v["x"] + v["width"], v["y"] + v["height"]]) * np.tile(SIZE, 2) / 100
                assert np.abs(back - [*pts.min(axis=0), *pts.max(axis=0)]).max() < 1e-3
                assert v["rotation"] == 0
    assert len(ids) == len(words)

    manifest = read_json(os.path.join(photo, "manifest.json"))
    assert (manifest["seed"], manifest["pages"], manifest["words"], manifest["page_size"]) == (0, 4, len(words),
                                                                                            list(SIZE))
    assert manifest["formats"] == {"pages": "pages/Label.txt", "easyocr": "easyocr/labels.csv",
                                   "labelstudio": "labelstudio.json"}
    assert manifest["fonts"] == [
        {"file": PEN, "sha256": hashlib.sha256(open(PEN, "rb").read()).hexdigest(), "family": "Nanum Pen Script"},
        {"file": PILGI, "sha256": hashlib.sha256(open(PILGI, "rb").read()).hexdigest(), "family": "UnPilgi"}]
    assert sorted(manifest["page_fonts"]) == [0, 0, 1, 1]  # one font a page, cycled


def test_crops_are_the_boxes_cut_from_the_pages_with_easyocrs_margin(photo):
    crops = iter(csv_rows(photo)[1:])
    for key, boxes in label_txt(photo):
        page = Image.open(os.path.join(photo, key)).convert("L")
        for b in boxes:
            name, word = next(crops)
            assert word == b["transcription"]
            pts = np.array(b["points"])
            (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
            m = round(CROP_MARGIN * (y1 - y0))
            box = (max(0, x0 - m), max(0, y0 - m), min(SIZE[0], x1 + m + 1), min(SIZE[1], y1 + m + 1))
            with Image.open(os.path.join(photo, "easyocr", name)) as crop:
                assert (crop.format, crop.mode) == ("PNG", "L")
                assert np.array_equal(np.asarray(crop), np.asarray(page.crop(box)))


def test_the_words_ink_lies_inside_its_box_with_a_small_margin(flat, photo):
    # The flat pages are the photographed ones' twins (same words and geometry, warp included), without light,
    # texture or blur: what is dark on them is ink.
    assert label_txt(flat) == label_txt(photo)
    for key, boxes in label_txt(flat):
        gray = np.asarray(Image.open(os.path.join(flat, key)).convert("L"))
        ink = gray < 160
        inside = np.zeros_like(gray)
        for b in boxes:
            cv2.fillPoly(inside, [np.array(b["points"], np.int32)], 1)
        assert ink.sum() > 500 * len(boxes) / 6
        assert not (ink & (inside == 0)).any(), f"{key}: ink outside every box"
        for b in boxes:
            pts = np.array(b["points"], float)
            mask = np.zeros_like(gray)
            cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
            ys, xs = np.nonzero(ink & (mask == 1))
            assert xs.size, f"{key}: no ink in the box of {b['transcription']}"
            for a, c in zip(pts, np.roll(pts, -1, axis=0)):
                edge = (c - a) / np.linalg.norm(c - a)
                gap = np.abs((xs - a[0]) * edge[1] - (ys - a[1]) * edge[0]).min()  # nearest ink to the side
                assert 1 <= gap <= BOX_MARGIN + 3, f"{key} {b['transcription']}: ink {gap:.1f} px from a side"


def test_same_arguments_same_bytes_another_seed_other_pages(photo, tmp_path):
    again = str(tmp_path / "again")
    make_scans(again, [PEN, PILGI], WORDS, **SMALL)
    assert files(again) == files(photo)
    other = str(tmp_path / "other")
    make_scans(other, [PEN, PILGI], WORDS, **SMALL, seed=1)
    assert files(other)["pages/page-0001.jpg"] != files(photo)["pages/page-0001.jpg"]
    assert [b["transcription"] for b in label_txt(other)[0][1]] != [b["transcription"] for b in label_txt(photo)[0][1]]


def test_words_come_in_a_seeded_order_each_once_nfc(tmp_path):
    nfd = unicodedata.normalize("NFD", "한글")
    words = [nfd, " 손글씨 ", "", *WORDS[2:], "손글씨"]
    out = make_scans(str(tmp_path / "s"), [PEN], words, **SMALL)
    used = [b["transcription"] for _, boxes in label_txt(out["dir"]) for b in boxes]
    assert out["words"] == len(used) and 16 <= len(used) <= 24
    assert len(set(used)) == len(used) and set(used) <= set(WORDS)
    assert used != [w for w in WORDS if w in used]  # not the list's order
    # the list runs out: words come again, in another order
    again = make_scans(str(tmp_path / "t"), [PEN], WORDS[:5], **SMALL)
    reused = [b["transcription"] for _, boxes in label_txt(again["dir"]) for b in boxes]
    assert set(reused) == set(WORDS[:5]) and len(reused) > 5 and reused[:5] != reused[5:10]


def test_a_font_skips_the_words_it_cannot_draw(tmp_path):
    words = WORDS + ["Hello", "2024", "pencil", "notebook", "Seoul", "Busan"]  # 36: enough for 6 pages
    out = make_scans(str(tmp_path / "s"), [GUSEUL, PEN], words, pages=6, words_per_page=(4, 6), page_size=SIZE)
    page_fonts = read_json(os.path.join(out["dir"], "manifest.json"))["page_fonts"]
    latin = set(words[len(WORDS):])
    used = []
    for k, (_, boxes) in zip(page_fonts, label_txt(out["dir"])):
        texts = [b["transcription"] for b in boxes]
        used += texts
        if k == 0:  # Guseul draws no Latin letters or digits
            assert not latin & set(texts)
    assert latin & set(used)  # the other font drew them
    assert len(set(used)) == len(used)


def test_commas_and_quotes_are_quoted_in_labels_csv(tmp_path):
    words = ["하나, 둘", '"말"', "셋"]
    out = make_scans(str(tmp_path / "s"), [PEN], words, pages=1, words_per_page=(3, 3), page_size=SIZE)
    raw = open(out["easyocr_csv"], encoding="utf-8").read()
    assert '"하나, 둘"' in raw and '"""말"""' in raw and "\r" not in raw
    assert sorted(r[1] for r in csv_rows(out["dir"])[1:]) == sorted(words)


def test_a_reserved_font_is_refused_before_it_is_read(tmp_path):
    out = tmp_path / "s"
    for name in ("GamjaFlower-Regular.ttf", "Poor_Story.ttf"):  # not there: refused by name alone
        with pytest.raises(HwocrError, match="reserved font family"):
            make_scans(str(out), [PEN, str(tmp_path / name)], WORDS, **SMALL)
    with pytest.raises(HwocrError, match="reserved font family"):
        families_fonts(["gamja-flower"])
    assert os.listdir(tmp_path) == []


def test_fonts_that_cannot_be_used_are_refused(tmp_path):
    with pytest.raises(HwocrError, match="DejaVuSans.ttf .*draws no Hangul"):
        make_scans(str(tmp_path / "s"), [PEN, LATIN], WORDS, **SMALL)
    with pytest.raises(HwocrError, match="Guseul.ttf .*draws none of the words"):
        make_scans(str(tmp_path / "s"), [GUSEUL], ["Hello", "2024"], **SMALL)
    with pytest.raises(HwocrError, match="missing.ttf does not exist"):
        make_scans(str(tmp_path / "s"), [str(tmp_path / "missing.ttf")], WORDS, **SMALL)
    assert os.listdir(tmp_path) == []


def test_an_out_dir_that_holds_files_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(HwocrError, match=re.escape(str(out))):
        make_scans(str(out), [PEN], WORDS, **SMALL)
    assert os.listdir(out) == ["notes.txt"] and os.listdir(tmp_path) == ["s"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert make_scans(str(empty), [PEN], WORDS, pages=1, words_per_page=(2, 2), page_size=SIZE)["words"] == 2
    assert os.path.isfile(empty / "manifest.json") and sorted(os.listdir(tmp_path)) == ["empty", "s"]


@pytest.mark.parametrize("change, message", [
    ({"pages": 0}, "pages must be at least 1"),
    ({"words_per_page": (5, 4)}, "words_per_page"),
    ({"page_size": (64, 64), "words_per_page": (14, 14)}, "do not fit"),
])
def test_bad_arguments_are_refused(tmp_path, change, message):
    with pytest.raises(HwocrError, match=message):
        make_scans(str(tmp_path / "s"), [PEN], WORDS, **{**SMALL, **change})
    assert os.listdir(tmp_path) == []


def test_families_fonts(tmp_path):
    assert families_fonts(["nanum-handwriting", "un-pilgi"]) == [
        PEN, BRUSH, PILGI, f"{FONT_DIR}/unfonts-core/UnPilgiBold.ttf", f"{FONT_DIR}/unfonts-extra/UnPilgia.ttf"]
    with pytest.raises(HwocrError, match="'no-such-hand' is not a family_group.*nanum-handwriting.*un-pilgi"):
        families_fonts(["un-pilgi", "no-such-hand"])
    catalogue = tmp_path / "fonts.yaml"
    catalogue.write_text("fonts:\n  - {file: /nonexistent/Hand.ttf, package: fonts-hand, family: Hand, "
                         "style: handwriting, family_group: hand, hangul: 11172}\n")
    with pytest.raises(HwocrError, match="/nonexistent/Hand.ttf of family 'hand' does not exist"):
        families_fonts(["hand"], catalogue=str(catalogue))
