"""Real sources in every format users have (models/sources.py): read, checked, split, cut as EasyOCR cuts, packed."""

import csv
import json
import os
import subprocess

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from hwocr.errors import HwocrError
from models.charset import load_charset
from models.lmdb_format import PackSettings, pack
from models.sources import (
    RealSettings,
    SourceSettings,
    assign,
    detect,
    easyocr_crop,
    import_source,
    read_source,
    split_of,
)
from tests.conftest import read_lmdb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EASYOCR_PYTHON = os.environ.get("HWOCR_EASYOCR_PYTHON", os.path.join(ROOT, ".venv-easyocr", "bin", "python"))
FONT = "/usr/share/fonts/truetype/nanum/NanumGothic.ttf"
CHARSET = load_charset("korean_g2")
WORDS = ["한글", "사랑", "바다", "하늘", "학교", "서울"]


def page(folder, name: str, words: list[str], tilt: float = 0.0) -> list[list[list[int]]]:
    """A white page with the words on two lines; their quadrilaterals (tl, tr, br, bl), the second line tilted by
    `tilt` degrees about its first word's corner."""
    font = ImageFont.truetype(FONT, 40)
    im = Image.new("L", (640, 360), 255)
    draw = ImageDraw.Draw(im)
    quads = []
    for i, w in enumerate(words):
        x, y = 40 + (i % 3) * 200, 60 + (i // 3) * 160
        x0, y0, x1, y1 = draw.textbbox((x, y), w, font=font)
        draw.text((x, y), w, font=font, fill=20)
        quads.append([[x0 - 3, y0 - 3], [x1 + 3, y0 - 3], [x1 + 3, y1 + 3], [x0 - 3, y1 + 3]])
    if tilt:
        im = im.rotate(-tilt, center=(40, 220), fillcolor=255, resample=Image.BICUBIC)
        c, s = np.cos(np.radians(tilt)), np.sin(np.radians(tilt))
        for q in quads[3:]:
            for p in q:
                dx, dy = p[0] - 40, p[1] - 220
                p[0], p[1] = round(40 + dx * c - dy * s), round(220 + dx * s + dy * c)
    im.save(os.path.join(folder, name))
    return quads


def pages_source(d, tilt=0.0, n=2):
    (d / "scans").mkdir()
    lines = []
    for k in range(n):
        quads = page(d / "scans", f"p{k}.png", WORDS, tilt)
        boxes = [{"transcription": w, "points": q, "difficult": False} for w, q in zip(WORDS, quads)]
        lines.append(f"scans/p{k}.png\t{json.dumps(boxes, ensure_ascii=False)}")
    (d / "scans" / "Label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d / "scans"


def real(**kw) -> RealSettings:
    return RealSettings(sources=[SourceSettings(**kw)])


def test_every_format_is_detected_and_read(tmp_path):
    scans = pages_source(tmp_path)
    crops = tmp_path / "crops"
    crops.mkdir()
    font = ImageFont.truetype(FONT, 30)
    for i, w in enumerate(WORDS):
        im = Image.new("L", (120, 44), 255)
        ImageDraw.Draw(im).text((6, 4), w, font=font, fill=0)
        im.save(crops / f"{i}.png")
    (crops / "gt.txt").write_text("".join(f"{i}.png\t{w}\n" for i, w in enumerate(WORDS)), encoding="utf-8")
    with open(crops / "labels.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["filename", "words"], *[[f"{i}.png", w] for i, w in enumerate(WORDS)]])
    (crops / "rec_gt.txt").write_text((crops / "gt.txt").read_text(encoding="utf-8"), encoding="utf-8")
    pack(str(crops / "gt.txt"), str(crops), str(tmp_path / "db"), PackSettings())
    ls = tmp_path / "ls"
    ls.mkdir()
    quads = page(ls, "p0.png", WORDS)
    os.rename(ls / "p0.png", ls / "0a1b2c3d-p0.png")  # as Label Studio names an upload
    result = []
    for i, (w, q) in enumerate(zip(WORDS, quads)):
        rid, (x0, y0), (x1, y1) = f"r{i}", q[0], q[2]
        geo = ({"x": x0 / 6.4, "y": y0 / 3.6, "width": (x1 - x0) / 6.4, "height": (y1 - y0) / 3.6, "rotation": 0}
               if i % 2 else {"points": [[x / 6.4, y / 3.6] for x, y in q]})
        kind = "rectangle" if i % 2 else "polygon"
        common = {"id": rid, "to_name": "image", "original_width": 640, "original_height": 360}
        result += [{**common, "type": kind, "from_name": "bbox", "value": geo},
                   {**common, "type": "textarea", "from_name": "transcription", "value": {**geo, "text": [w]}}]
    tasks = [{"id": 7, "data": {"ocr": "/data/upload/3/0a1b2c3d-p0.png"}, "annotations": [{"result": result}]}]
    (ls / "export.json").write_text(json.dumps(tasks), encoding="utf-8")

    for url, fmt, n in ((scans, "pages", 12), (crops, "easyocr", 6), (tmp_path / "db", "lmdb", 6),
                        (ls, "labelstudio", 6), (crops / "rec_gt.txt", "paddle", 6)):
        assert detect(str(url)) == fmt
        src = read_source(SourceSettings(name="s", url=str(url)))
        assert (src.format, len(src.entries)) == (fmt, n)
        assert [e.label for e in src.entries][:6] == WORDS
    gt_only = tmp_path / "gt_only"
    gt_only.mkdir()
    os.link(crops / "gt.txt", gt_only / "gt.txt")
    assert detect(str(gt_only)) == "gt"

    # Every format packs the same words; crops cut from pages hold their word (and little else).
    for url in (scans, crops, tmp_path / "db", ls):
        s = SourceSettings(name="s", url=str(url), split="test")
        report = import_source(s, real(name="s", url=str(url)), CHARSET, 25, str(tmp_path / "out" / url.name),
                               PackSettings())
        items = read_lmdb(report["splits"]["test"]["lmdb"])
        labels = sorted(v.decode() for k, v in items.items() if k.startswith(b"label-"))
        assert sorted(set(labels)) == sorted(WORDS) and report["dropped"] == {}
        for k, v in items.items():
            if k.startswith(b"image-"):
                img = cv2.imdecode(np.frombuffer(v, np.uint8), cv2.IMREAD_GRAYSCALE)
                assert 30 <= img.shape[0] <= 70 and img.min() < 60 and img.max() > 200


def test_crops_are_cut_as_easyocr_cuts_detector_boxes(tmp_path):
    """Against EasyOCR's own group_text_box (readtext's add_margin 0.1) and its crop of get_image_list, for level
    boxes and tilted ones, in EasyOCR's venv."""
    if not os.path.exists(EASYOCR_PYTHON):
        pytest.fail(f"{EASYOCR_PYTHON} is missing: scripts/bootstrap.sh creates it")
    quads = page(tmp_path, "p.png", WORDS, tilt=12)
    gray = cv2.imread(str(tmp_path / "p.png"), cv2.IMREAD_GRAYSCALE)
    script = """
import json, sys, cv2, numpy as np
from easyocr.utils import group_text_box, four_point_transform
img = cv2.imread(sys.argv[1], cv2.IMREAD_GRAYSCALE)
for quad in json.loads(sys.argv[2]):
    horizontal, free = group_text_box([np.array(quad).reshape(-1)], add_margin=0.1)
    if horizontal:
        x0, x1, y0, y1 = horizontal[0]
        crop = img[max(0, y0):min(y1, img.shape[0]), max(0, x0):min(x1, img.shape[1])]
    else:
        crop = four_point_transform(img, np.array(free[0], dtype="float32"))
    print(json.dumps(crop.tolist()))
"""
    proc = subprocess.run([EASYOCR_PYTHON, "-c", script, str(tmp_path / "p.png"), json.dumps(quads)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = [np.array(json.loads(line), dtype=np.uint8) for line in proc.stdout.strip().splitlines()]
    assert len(theirs) == 6
    for quad, crop in zip(quads, theirs):
        ours = easyocr_crop(gray, quad)
        assert ours.shape == crop.shape and np.array_equal(ours, crop)
    level, tilted = easyocr_crop(gray, quads[0]), easyocr_crop(gray, quads[4])
    assert level.shape[0] > quads[0][2][1] - quads[0][0][1]  # the margin
    ys = [p[1] for p in quads[4]]
    assert tilted.shape[0] < max(ys) - min(ys)  # warped straight, not the tilted box's bounding rectangle


def test_the_auto_split_is_by_page_seeded_and_stable(tmp_path):
    scans = pages_source(tmp_path, n=12)
    s = SourceSettings(name="s", url=str(scans), ratio=0.3)
    report = import_source(s, real(name="s", url=str(scans), ratio=0.3), CHARSET, 25, str(tmp_path / "o"),
                           PackSettings())
    pages = {split: {p["page"] for p in row.get("pages", [])} for split, row in report["splits"].items()}
    assert sum(len(p) for p in pages.values()) == 12 and not (pages["train"] & pages.get("test", set()))
    assert {split: row["samples"] for split, row in report["splits"].items()} == {
        split: 6 * len(p) for split, p in pages.items()}
    # A page's side depends on the seed and its own name alone: adding pages moves none of the others.
    sides = {g: split_of(g, 0, 0.8, 0.1) for g in (f"p{k}.png" for k in range(200))}
    assert sides == {g: split_of(g, 0, 0.8, 0.1) for g in reversed(list(sides))}
    counts = {split: list(sides.values()).count(split) for split in ("train", "val", "test")}
    assert 140 <= counts["train"] <= 180 and counts["val"] >= 8 and counts["test"] >= 8
    assert sides != {g: split_of(g, 1, 0.8, 0.1) for g in sides}


BAD = [
    # (what to write, format, the one line it must say)
    ("gt.txt", "a.png,한글\n", "gt", "line 1: expected 'path<TAB>label', found 0 tabs (a comma-separated file?"),
    ("gt.txt", "../x.png\t한글\n", "gt", "gt.txt line 1: path '../x.png' leaves the folder"),
    ("gt.txt", "/etc/passwd\t한글\n", "gt", "gt.txt line 1: path '/etc/passwd' is absolute"),
    ("gt.txt", "link.png\t한글\n", "gt", "gt.txt line 1: path 'link.png' is a symlink to"),
    ("labels.csv", "file,text\na.png,한글\n", "easyocr",
     "labels.csv line 1: expected EasyOCR's header 'filename,words'"),
    ("labels.csv", "filename\twords\na.png\t한글\n", "easyocr", "(a tab-separated file? give format paddle)"),
    ("labels.csv", "filename,words\na.png,한,글\n", "easyocr", "labels.csv line 2: 3 fields, the header has 2"),
    ("Label.txt", "p.png\t[{\"transcription\": \"한글\"}]\n", "pages", "Label.txt line 1 box 1: expected"),
    ("Label.txt", "p.png\tnot json\n", "pages", "Label.txt line 1: its boxes are not JSON"),
    ("Label.txt", "p.png\t[{\"transcription\": \"한글\", \"points\": [[1, 2]]}]\n", "pages",
     "box 1: a box needs at least 4 points, got 1"),
    ("export.json", "[{\"id\": 1, \"data\": {\"image\": \"/data/upload/1/p.png\"}, \"annotations\": [{\"result\": "
     "[{\"id\": \"a\", \"type\": \"rectanglelabels\", \"value\": {\"x\": 1, \"y\": 1, \"width\": 5, \"height\": 5, "
     "\"rectanglelabels\": [\"cat\"]}}]}]}]", "labelstudio",
     "task 1 region a: a box without a transcription: not an export of Label Studio's OCR template"),
    ("export.json", "{\"x\": 1}", "labelstudio", "export.json: no transcriptions: an export of another Label Studio"),
    ("export.json", "[{\"id\": 4, \"data\": {\"x\": 1}, \"annotations\": [{\"result\": []}]}]", "labelstudio",
     "export.json task 4: no image in its data (x)"),
    ("export.json", "[{\"id\": 4, \"data\": {\"ocr\": \"/data/upload/1/q.png\"}, \"annotations\": [{}]}]",
     "labelstudio", "export.json task 4: image '/data/upload/1/q.png' is not in"),
]


@pytest.mark.parametrize("name, text, fmt, message", BAD, ids=[m[:40] for *_, m in BAD])
def test_bad_sources_are_one_line_naming_file_and_row(tmp_path, name, text, fmt, message):
    src = tmp_path / "src"
    src.mkdir()
    (src / name).write_text(text, encoding="utf-8")
    Image.new("L", (40, 20), 255).save(src / "p.png")
    (tmp_path / "outside.png").write_bytes(b"x")
    os.symlink(tmp_path / "outside.png", src / "link.png")
    with pytest.raises(HwocrError) as e:
        read_source(SourceSettings(name="s", url=str(src), format=fmt))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_image_box_and_label_problems_are_named_and_nothing_is_packed(tmp_path):
    scans = pages_source(tmp_path)
    label = scans / "Label.txt"
    good = label.read_text(encoding="utf-8")
    out = tmp_path / "o"

    def attempt(text: str, **kw):
        label.write_text(text, encoding="utf-8")
        s = SourceSettings(name="s", url=str(scans), split="test")
        with pytest.raises(HwocrError) as e:
            import_source(s, RealSettings(sources=[s], **kw), CHARSET, 25, str(out), PackSettings())
        assert not out.exists() or not any(out.iterdir())  # no split half-packed
        return str(e.value)

    moved = good.splitlines()
    first = json.loads(moved[1].split("\t")[1])
    first[0]["points"] = [[600, 300], [700, 300], [700, 380], [600, 380]]
    assert "Label.txt line 2 box 1: box [[600, 300], [700, 300], [700, 380], [600, 380]] lies outside its page " \
           "(640 x 360 px)" in attempt(moved[0] + "\n" + "scans/p1.png\t" + json.dumps(first, ensure_ascii=False))
    assert "scans/nope.png does not exist" in attempt(good.replace("scans/p0.png", "scans/nope.png"))
    (scans / "broken.png").write_bytes(b"not an image")
    assert "Label.txt line 1 box 1: page " in attempt(good.replace("scans/p0.png", "scans/broken.png"))
    assert "broken.png: cannot be decoded as an image" in attempt(good.replace("scans/p0.png", "scans/broken.png"))
    latin = good.replace("한글", "ÆØ").replace("사랑", "ÆØ").replace("바다", "ÆØ").replace("하늘", "ÆØ")
    said = attempt(latin, max_dropped=0.5)
    assert "8 of 12 labels dropped ({'out_of_charset': 8}), more than real.max_dropped 0.5" in said
    assert "characters outside the set: 'ÆØ'" in said


def test_settings_refuse_ratios_that_do_not_add_up():
    from pydantic import ValidationError

    for sources, message in (
        ([{"name": "a", "url": "x", "ratio": 0.6}, {"name": "b", "url": "y", "ratio": 0.5}], "add up to 1.1"),
        ([{"name": "a", "url": "x", "ratio": 0.3, "split": "test"}], "its split is test (held out)"),
        ([{"name": "a", "url": "x"}, {"name": "a", "url": "y"}], "the name 'a' is used twice"),
        ([{"name": "A b", "url": "x"}], "should match pattern"),
    ):
        with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
            RealSettings(sources=sources)


def test_pack_keeps_paths_in_their_folder_unless_allowed(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("L", (40, 20), 255).save(tmp_path / "outside.png")
    (images / "gt.txt").write_text("../outside.png\t한글\n", encoding="utf-8")
    with pytest.raises(HwocrError, match=r"gt.txt line 1: path '../outside.png' leaves the folder"):
        pack(str(images / "gt.txt"), str(images), str(tmp_path / "db"), PackSettings())
    assert not (tmp_path / "db").exists()
    assert pack(str(images / "gt.txt"), str(images), str(tmp_path / "db"), PackSettings(),
                allow_outside=True)["samples"] == 1


def test_a_writer_column_keeps_a_writers_images_on_one_side(tmp_path):
    crops = tmp_path / "crops"
    crops.mkdir()
    rows = [["filename", "words", "writer"]]
    for i in range(60):
        Image.new("L", (60, 30), 255).save(crops / f"{i}.png")
        rows.append([f"{i}.png", WORDS[i % 6], f"w{i % 6}"])
    with open(crops / "labels.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    s = SourceSettings(name="s", url=str(crops))
    src = read_source(s)
    sides = assign(src, s, RealSettings(sources=[s]))
    by_writer = {}
    for split, entries in sides.items():
        for e in entries:
            by_writer.setdefault(e.group, set()).add(split)
    assert set(by_writer) == {f"writer:w{k}" for k in range(6)} and all(len(v) == 1 for v in by_writer.values())


def test_a_prelabelled_folder_trains_on_what_a_person_reviewed(tmp_path):
    """hwocr prelabel's Label.txt adds a status to each word: reviewed ones train, predicted and rejected ones are
    left out and counted, and do not count as faults of the data against real.max_dropped."""
    scans = pages_source(tmp_path)  # 2 pages of 6 words
    label = scans / "Label.txt"
    rows = [line.split("\t") for line in label.read_text(encoding="utf-8").splitlines()]
    statuses = iter(["reviewed", "predicted", "rejected", "predicted", "predicted", "predicted",
                     "reviewed", "reviewed", "predicted", "predicted", "predicted", "rejected"])
    edited = []
    for path, words in rows:
        words = json.loads(words)
        for w in words:
            w["status"], w["confidence"] = next(statuses), 0.5
        edited.append(f"{path}\t{json.dumps(words, ensure_ascii=False)}")
    label.write_text("\n".join(edited) + "\n", encoding="utf-8")
    s = SourceSettings(name="s", url=str(scans), split="test")
    report = import_source(s, RealSettings(sources=[s], max_dropped=0.1), CHARSET, 25, str(tmp_path / "o"),
                           PackSettings())
    assert report["dropped"] == {"unreviewed": 7, "rejected": 2}
    assert report["splits"]["test"]["samples"] == 3
    labels = sorted(v.decode() for k, v in read_lmdb(tmp_path / "o" / "test").items() if k.startswith(b"label-"))
    assert labels == sorted([WORDS[0], WORDS[0], WORDS[1]])  # the reviewed words: page 1's first, page 2's two

    label.write_text("\n".join(edited).replace('"reviewed"', '"predicted"') + "\n", encoding="utf-8")
    with pytest.raises(HwocrError, match=r"real source s: none of its 12 words is reviewed yet \(\{'unreviewed': "
                                         r"10, 'rejected': 2\}\)"):
        import_source(s, RealSettings(sources=[s]), CHARSET, 25, str(tmp_path / "o2"), PackSettings())
