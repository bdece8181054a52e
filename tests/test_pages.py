"""The pages evaluation: word images composed into pages, read by the real easyocr's readtext, scored by overlap."""

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from hwocr.errors import HwocrError
from models.bundle import ExportSettings, export_easyocr_fn
from models.charset import load_charset
from models.easyocr_venv import bundle_name, run_in_easyocr
from models.pages import Page, PageSet, Word, compose_pages, score_pages, write_pages
from models.pretrained import CRAFT, GEN2, load_pretrained, resolve_pretrained, save_checkpoint_state
from models.reading import Reading
from tests.test_export import EASYOCR_PYTHON

FONT = "/usr/share/fonts/truetype/nanum/NanumGothic.ttf"
ENGLISH = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")


def render(words: list[str], font: str = FONT, size: int = 26, height: int = 32) -> list[Image.Image]:
    """Word images as tests/tiny.py's tiny_lmdb renders its words (what the tiny model learned)."""
    font = ImageFont.truetype(font, size)
    out = []
    for w in words:
        im = Image.new("L", (font.getbbox(w)[2] + 8, height), 255)
        ImageDraw.Draw(im).text((4, 2), w, font=font, fill=0)
        out.append(im)
    return out


def test_compose_pages_is_seeded_and_places_every_word_once():
    labels = [f"{w}{i}" for i, w in enumerate(["한글", "사랑", "Hello", "2024", "바다", "하늘"] * 7)]
    images = render(labels)
    labels[5] = "가나다라마바사아자차카타파하" * 4  # too wide for a line: scaled down
    images = render(labels)
    pages = compose_pages(images, labels, seed=3)
    again = compose_pages(images, labels, seed=3)
    assert len(pages) > 1
    assert [p.words for p in pages] == [p.words for p in again]
    assert all(a.image.tobytes() == b.image.tobytes() for a, b in zip(pages, again))
    other = compose_pages(images, labels, seed=4)
    assert [p.words for p in other] != [p.words for p in pages]

    # Every word once, in order; the last page may hold fewer.
    assert [w.label for p in pages for w in p.words] == labels
    for page in pages:
        assert page.image.mode == "L" and page.image.width == 1600
        lines = page.lines()
        assert 1 <= len(lines) <= 8 and all(1 <= len(ws) <= 5 for ws in lines.values())
        boxes = [w.box for w in page.words]
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= page.image.width and 0 <= y0 < y1 <= page.image.height
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]), (a, b)
        # The box is the word's ink: dark inside, no more than antialiasing just around it.
        arr = np.asarray(page.image)
        for x0, y0, x1, y1 in boxes:
            assert arr[y0:y1, x0:x1].min() < 100
            for ring in (arr[y0 - 3:y0, x0:x1], arr[y1:y1 + 3, x0:x1], arr[y0:y1, x0 - 3:x0], arr[y0:y1, x1:x1 + 3]):
                assert ring.min() > 128
        # Lines go down the page without sharing rows.
        bands = [(min(w.box[1] for w in ws), max(w.box[3] for w in ws)) for ws in lines.values()]
        assert all(a[1] <= b[0] for a, b in zip(bands, bands[1:]))


def corners(x0, y0, x1, y1) -> list[list[int]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_score_pages_by_overlap_and_by_line():
    blank = Image.new("L", (800, 600), 255)
    one = Page(blank, [Word("가나", (100, 100, 200, 150), 0), Word("다라", (230, 100, 330, 150), 0),
                       Word("마바", (400, 100, 500, 150), 0),
                       Word("사아", (100, 200, 200, 250), 1), Word("자차", (230, 200, 330, 250), 1)])
    one_read = [[corners(95, 95, 335, 155), "가나 다라", 0.9],  # EasyOCR merged two words: read with a space
                # 마바 missed
                [corners(98, 198, 202, 252), "사아", 0.8],
                [corners(228, 198, 332, 252), "자카", 0.7]]  # misread
    two = Page(blank, [Word("한글", (100, 100, 200, 150), 0), Word("사랑", (300, 100, 400, 150), 0),
                       Word("바다", (100, 200, 200, 250), 1)])
    two_read = [[corners(100, 100, 200, 150), "한글  한글", 0.9],  # one word credits one token
                [corners(300, 100, 340, 150), "사", 0.3],  # covers 40% of 사랑: not detected
                [corners(100, 200, 200, 250), "바다", 0.9],
                [corners(50, 500, 90, 530), "x", 0.2]]  # a stray box counts against the nearest line
    result = score_pages([one, two], [one_read, two_read])
    # Lines: "가나 다라 마바" read "가나 다라" (3 edits of 8), "사아 자차" read "사아 자카" (1 of 5),
    # "한글 사랑" read "한글 한글 사" (4 of 5), "바다" read "x 바다" (2 of 2).
    assert result == {"pages": 2, "words": 8, "lines": 4, "detection_recall": 75.0, "word_accuracy": 62.5,
                      "cer": 10 / 20, "words_in_merged_boxes": 2}


def test_a_merged_box_read_without_its_space_reads_no_word():
    page = Page(Image.new("L", (800, 300), 255), [Word("가나", (100, 100, 200, 150), 0),
                                                   Word("다라", (230, 100, 330, 150), 0)])
    result = score_pages([page], [[[corners(95, 95, 335, 155), "가나다라", 0.9]]])
    assert result["detection_recall"] == 100.0 and result["word_accuracy"] == 0.0
    assert result["cer"] == 1 / 5  # the missing space only
    assert score_pages([page], [[]])["cer"] == 1.0
    with pytest.raises(ValueError, match="1 readings for 2 pages"):
        score_pages([page, page], [[]])


# EasyOCR's readtext itself on each page, to compare with the boxes found once and then read (models/easyocr_read.py).
READTEXT = """
import json, sys
import easyocr
from easyocr_read import _number
bundle, name, *paths = sys.argv[1:]
reader = easyocr.Reader(["ko"], gpu=False, recog_network=name, quantize=False, user_network_directory=bundle,
                        model_storage_directory=bundle, download_enabled=False, verbose=False)
print(json.dumps([[[[[_number(x), _number(y)] for x, y in box], text, float(conf)] for box, text, conf in
                   reader.readtext(path)] for path in paths], ensure_ascii=False))
"""


def evaluate_pages(bundle: str, images, labels, scratch: str, against_readtext: bool = False) -> dict:
    """2 pages of 3 lines of 2 words (12 words), 1000 px wide to keep CRAFT's CPU time down; checked against
    score_pages on the readings it returns and, when asked, against readtext(path) itself."""
    layout = dict(lines_per_page=(3, 3), words_per_line=(2, 2), page_width=1000)
    pages, paths = write_pages(images, labels, scratch, seed=1, **layout)  # as tasks/evaluate.py reads pages
    assert sorted(os.listdir(scratch)) == ["page-0000.png", "page-0001.png"]
    boxes, readings = run_in_easyocr(bundle, bundle_name(bundle), PageSet(pages, paths).jobs(bundle))
    assert [len(b) for b in boxes] == [2, 2]  # each page's [horizontal_list, free_list]
    if against_readtext:
        proc = subprocess.run([EASYOCR_PYTHON, "-c", READTEXT, bundle, bundle_name(bundle), *paths], check=True,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": MODELS})
        assert json.loads(proc.stdout) == readings  # bit for bit: the same boxes, texts and confidences
    result = score_pages(pages, readings)
    assert result["pages"] == 2 and result["words"] == 12 and result["lines"] == 6
    assert len(readings) == 2
    for box, text, conf in (r for page in readings for r in page):
        assert len(box) == 4 and all(isinstance(v, (int, float)) for pt in box for v in pt)
        assert isinstance(text, str) and 0.0 <= conf <= 1.0
    return result


@pytest.mark.slow
def test_pages_read_by_a_recognizer_that_reads(tmp_path, monkeypatch):
    """english_g2 under korean_g2's head (its 96 characters kept) reads printed English words: the figures are
    real readings, a merged box included; the boxes found are kept for the next model that reads the pages."""
    from hwocr import storage

    monkeypatch.setattr(storage, "CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)  # the 913 new head rows
    model = GEN2.build(len(load_charset("korean_g2")) + 1)
    load_pretrained(model, resolve_pretrained("english_g2", download=False), load_charset("korean_g2"),
                    load_charset("english_g2"))
    torch.save(save_checkpoint_state(model, Reading(img_h=64, charset=load_charset("korean_g2"))),
               tmp_path / "english.pth")
    export_easyocr_fn(str(tmp_path / "english.pth"), str(tmp_path / "bundle"), ExportSettings(name="hwocr_en"))
    labels = "water people number Seoul Monday London house point letter answer study world".split()
    images = render(labels, font=ENGLISH, size=30, height=40)
    result = evaluate_pages(str(tmp_path / "bundle"), images, labels, str(tmp_path / "pages"), against_readtext=True)
    assert result["detection_recall"] == 100.0, result
    assert result["word_accuracy"] >= 90.0 and result["cer"] <= 0.05, result
    # Seed 1 sets two words close enough for EasyOCR to read them as one box, with the space between them.
    assert result["words_in_merged_boxes"] >= 2, result

    # The same pages again take their boxes from the cache (planted boxes prove it), and a changed page does not.
    cache = tmp_path / "cache" / "detections"
    kept = sorted(cache.iterdir())
    assert len(kept) == 2 and all(json.loads(f.read_text())[0] for f in kept)
    planted = [[[[k, 2, 3, 4]], []] for k in range(2)]
    for f, box in zip(kept, planted):
        f.write_text(json.dumps(box))
    paths = [str(tmp_path / "pages" / f"page-000{k}.png") for k in (0, 1)]
    page = Image.open(paths[0]).convert("L")
    page.putpixel((0, 0), 0)
    page.save(paths[0])
    detect = PageSet([], paths).jobs(str(tmp_path / "bundle"))[0]
    [again] = run_in_easyocr(str(tmp_path / "bundle"), "hwocr_en", [detect])
    assert again[0] not in planted and again[1] in planted and len(list(cache.iterdir())) == 3


def test_a_bundle_without_the_detector_stops_before_easyocr_starts(tmp_path, monkeypatch):
    for ext in ("yaml", "pth", "py"):
        (tmp_path / f"hwocr_pages.{ext}").write_text("")
    # Were EasyOCR started, this would be the error instead.
    monkeypatch.setenv("HWOCR_EASYOCR_PYTHON", str(tmp_path / "no-python"))
    with pytest.raises(HwocrError, match=rf"no {CRAFT.filename} .*md5 {CRAFT.md5}.*hwocr export"):
        PageSet([], [str(tmp_path / "page.png")]).jobs(str(tmp_path))
