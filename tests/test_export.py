"""The EasyOCR bundle, loaded by the real easyocr package (1.7.2, in its own venv beside torch 2.14.1)."""

import json
import os
import subprocess

import cv2
import pytest
import torch
import yaml

from hwocr.errors import HwocrError
from models.bundle import ExportSettings, craft_path, export_easyocr_fn
from models.charset import load_charset
from models.codec import CTCCodec
from models.easyocr_compat import recognize
from models.easyocr_venv import SCRIPT, run_in_easyocr
from models.evaluation import evaluate_checkpoint
from models.pretrained import GEN2, load_state_dict
from models.trainer import train
from tests.tiny import WORDS, settings

pytestmark = pytest.mark.slow  # see pyproject.toml's markers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EASYOCR_PYTHON = os.environ.get("HWOCR_EASYOCR_PYTHON", os.path.join(ROOT, ".venv-easyocr", "bin", "python"))

READ = """
import json, sys, cv2, easyocr
bundle, images = sys.argv[1], sys.argv[2:]
reader = easyocr.Reader(["ko"], gpu=False, detector=False, recog_network="hwocr_test", quantize=False,
                        user_network_directory=bundle, model_storage_directory=bundle, download_enabled=False,
                        verbose=False)
out = []
for path in images:
    [(box, text, conf)] = reader.recognize(cv2.imread(path, cv2.IMREAD_GRAYSCALE))
    out.append([text, float(conf)])
print(json.dumps(out, ensure_ascii=False))
"""


def test_easyocr_reads_the_bundle_as_we_do(trained, tiny_lmdb, tmp_path, monkeypatch):
    if not os.path.exists(EASYOCR_PYTHON):
        pytest.fail(f"{EASYOCR_PYTHON} is missing: scripts/bootstrap.sh creates it (torch 2.14.1, easyocr 1.7.2)")
    files = export_easyocr_fn(trained, str(tmp_path / "bundle"), ExportSettings(name="hwocr_test"))
    # The detector travels with the bundle whenever export can find it (tests/test_readme_snippets.py requires it).
    detector = ["craft_mlt_25k.pth"] if craft_path() else []
    assert sorted(os.listdir(tmp_path / "bundle")) == ["README.md", *detector, "hwocr_test.pth", "hwocr_test.py",
                                                       "hwocr_test.yaml"]
    assert files["detector"] == (str(tmp_path / "bundle" / "craft_mlt_25k.pth") if detector else None)
    assert files["pth"].endswith("hwocr_test.pth")
    config = yaml.safe_load((tmp_path / "bundle" / "hwocr_test.yaml").read_text(encoding="utf-8"))
    assert config["character_list"] == load_charset("korean_g2") and config["imgH"] == 32
    assert config["lang_list"] == ["ko"]
    assert all(k.startswith("module.") for k in torch.load(files["pth"], weights_only=True))

    images = [os.path.join(os.path.dirname(tiny_lmdb), "img", f"{i}.png") for i in range(len(WORDS))]
    proc = subprocess.run([EASYOCR_PYTHON, "-c", READ, str(tmp_path / "bundle"), *images],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])

    codec = CTCCodec(load_charset("korean_g2"))
    model = GEN2.build(codec.num_class)
    model.load_state_dict(load_state_dict(trained))
    ours = [recognize(model, codec, cv2.imread(p, cv2.IMREAD_GRAYSCALE), 32) for p in images]
    assert [t for t, _ in theirs] == [t for t, _ in ours]
    for (_, a), (_, b) in zip(theirs, ours):
        assert a == pytest.approx(b, rel=1e-3, abs=1e-5)
    # Trained at natural width, as EasyOCR reads, the model reads every word through EasyOCR: the agreement is
    # between real readings.
    assert [t for t, _ in theirs] == WORDS

    # `hwocr evaluate --engine easyocr` scores the bundle through EasyOCR itself, float and int8 ..., all its
    # readings in one EasyOCR process (each start-up costs seconds): a Python that logs its starts tells.
    starts = tmp_path / "starts.txt"
    counting = tmp_path / "easyocr-python"
    counting.write_text(f"#!/bin/sh\necho \"$@\" >> '{starts}'\nexec '{EASYOCR_PYTHON}' \"$@\"\n")
    counting.chmod(0o755)
    with monkeypatch.context() as m:
        m.setenv("HWOCR_EASYOCR_PYTHON", str(counting))
        report = evaluate_checkpoint(str(tmp_path / "bundle"), tiny_lmdb, str(tmp_path / "eval"), settings(),
                                     engine="easyocr")
    assert [line.split()[0] for line in starts.read_text().splitlines()] == [SCRIPT]
    assert report["samples"] == 4 and report["accuracy"] == 100.0
    assert report["easyocr"]["float"]["accuracy"] == 100.0 and report["easyocr"]["float"]["cer"] == 0.0
    assert 0 <= report["easyocr"]["int8"]["accuracy"] <= 100 and 0 <= report["easyocr"]["int8_agreement"] <= 100
    # recognize's batched branch (what a GPU runs with batch_size > 1): one box a batch is the plain reading, ...
    bundle = str(tmp_path / "bundle")
    job = {"read": "batched", "quantize": False, "batch": 1, "paths": images}
    assert run_in_easyocr(bundle, "hwocr_test", [job]) == [[list(t) for t in theirs]]
    # ... and the pipeline's figure for 8 a batch (every crop padded to the widest) counts readings equal to it.
    b = report["easyocr"]["batch"]
    assert (b["samples"], b["batch_size"]) == (4, 8) and b["agreement"] == b["accuracy"]  # float reads all 4
    pages = report["easyocr"]["pages"]  # the 4 words composed into a page, read with readtext (tests/test_pages.py)
    assert pages["words"] == 4 and pages["detection_recall"] >= 75 and 0 <= pages["word_accuracy"] <= 100
    rows = (tmp_path / "eval" / "predictions.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert [r.split("\t")[2] for r in rows] == [t for t, _ in theirs]
    # ... and hwocr's own evaluation of the checkpoint (the figure the pipeline reports) gives the same readings,
    # read for read, with the same confidences.
    mine = evaluate_checkpoint(trained, tiny_lmdb, str(tmp_path / "mine"), settings())
    assert mine["accuracy"] == report["accuracy"] and mine["cer"] == report["cer"]
    mine_rows = (tmp_path / "mine" / "predictions.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert [r.split("\t")[2] for r in mine_rows] == [t for t, _ in theirs]
    for row, (_, conf) in zip(mine_rows, theirs):
        assert float(row.split("\t")[3]) == pytest.approx(conf, abs=2e-4)


def test_a_squashing_model_reads_worse_in_easyocr_than_it_reports(tiny_lmdb, tmp_path):
    """The seed's fixed width (pad: squash into img_w) scores itself at that width; EasyOCR reads at natural width.
    hwocr evaluates with the settings the model was trained with, so only the EasyOCR check exposes the gap."""
    out = tmp_path / "run"
    fixed = settings(num_iter=240, val_interval=60, preprocess="pad", img_w=48)
    result = train(fixed, [tiny_lmdb], tiny_lmdb, str(out), log=lambda m: None)
    assert result["best_accuracy"] == 100.0  # at its own squashed width
    export_easyocr_fn(str(out / "best_accuracy.pth"), str(tmp_path / "bundle"), ExportSettings())
    theirs = evaluate_checkpoint(str(tmp_path / "bundle"), tiny_lmdb, str(tmp_path / "eval"), fixed,
                                 engine="easyocr", page_words=0)  # no pages: the crops tell
    assert theirs["accuracy"] < 100.0


def test_export_refuses_a_charset_mismatch_and_bad_names(trained, tmp_path):
    charset = tmp_path / "abc.txt"
    charset.write_text("abc", encoding="utf-8")
    abc = settings(charset=str(charset))
    # The checkpoint knows its characters: another set given is refused, naming both.
    with pytest.raises(HwocrError, match=r"asked for train.charset .*abc.txt \(the model's korean_g2: 1008 characters"):
        export_easyocr_fn(trained, str(tmp_path / "bundle"), ExportSettings(), abc, {"train.charset"})
    # One without a contract is read with the set given, and its head must fit it.
    torch.save(load_state_dict(trained), tmp_path / "plain.pth")
    with pytest.raises(HwocrError, match=r"1009 output classes, but its character set .*abc.txt has 3 characters"):
        export_easyocr_fn(str(tmp_path / "plain.pth"), str(tmp_path / "bundle"), ExportSettings(), abc,
                          {"train.charset", "train.img_h"})
    assert not (tmp_path / "bundle").exists()
    for bad, why in (("my-model", "identifier"), ("한글", "ASCII"), ("torch", "shadow"), ("json", "shadow"),
                     ("class", "identifier")):
        with pytest.raises(ValueError, match=why):
            ExportSettings(name=bad)


SAME = """
import json, sys, easyocr
sys.path.insert(0, sys.argv[1])
import easyocr_read
bundle, images = sys.argv[2], sys.argv[3:]
out = {}
for quantize in (False, True):
    reader = easyocr.Reader(["ko"], gpu=False, detector=False, recog_network="hwocr_test", quantize=quantize,
                            user_network_directory=bundle, model_storage_directory=bundle, download_enabled=False,
                            verbose=False)
    grays = [easyocr_read.cv2_gray(p) for p in images]
    out[quantize] = [[[t, float(c)] for _, t, c in (reader.recognize(g)[0] for g in grays)],
                     [[t, float(c)] for t, c in easyocr_read.recognize_like(reader, grays, group=3)]]
print(json.dumps(list(out.values()), ensure_ascii=False))
"""


def test_recognize_like_reads_as_recognize_does(trained, tiny_lmdb, tmp_path):
    """The check's float and int8 readings (same-width images through one get_text call) are per-image
    recognize()'s, bit for bit: images of several widths, some sharing one, a low-confidence one re-read with more
    contrast, groups of 3 so that a width spans calls."""
    import numpy as np

    export_easyocr_fn(trained, str(tmp_path / "bundle"), ExportSettings(name="hwocr_test"))
    images, rng = [], np.random.default_rng(0)
    for i in range(len(WORDS)):
        im = cv2.imread(os.path.join(os.path.dirname(tiny_lmdb), "img", f"{i}.png"), cv2.IMREAD_GRAYSCALE)
        h, w = im.shape
        variants = [im, cv2.resize(im, (w * 3 // 2, h)), cv2.resize(im, (w * 3, h)), im // 4 + 150,
                    np.clip(im + rng.normal(0, 40, im.shape), 0, 255).astype(np.uint8)]
        for k, v in enumerate(variants):
            images.append(str(tmp_path / f"{i}-{k}.png"))
            cv2.imwrite(images[-1], v)
    images.append(str(tmp_path / "blank.png"))
    cv2.imwrite(images[-1], rng.integers(200, 256, (32, 90)).astype(np.uint8))
    proc = subprocess.run([EASYOCR_PYTHON, "-c", SAME, os.path.join(ROOT, "models"), str(tmp_path / "bundle"),
                           *images], capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for theirs, ours in json.loads(proc.stdout.strip().splitlines()[-1]):
        assert ours == theirs
        assert any(c < 0.1 for _, c in theirs)  # a reading get_text re-read with more contrast
    widths = [-(-w // h) for h, w in (cv2.imread(p, cv2.IMREAD_GRAYSCALE).shape for p in images)]  # in heights
    assert len(set(widths)) >= 3 and len(widths) > len(set(widths))
