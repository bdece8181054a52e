"""The reading contract: a checkpoint knows how it is read, carries it into EasyOCR's format unchanged, and every
reader follows it (models/reading.py)."""

import contextlib
import io
import json
import os
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
import yaml

from hwocr.errors import HwocrError
from models.charset import load_charset
from models.pretrained import GEN2, resolve_pretrained, save_checkpoint_state
from models.reading import Reading, bundle_reading, open_model, peek
from models.train_settings import ModelSettings, TrainSettings
from tests.tiny import settings

KOREAN = load_charset("korean_g2")
AT_32 = Reading(img_h=32, charset=KOREAN, charset_name="korean_g2", pretrained="none")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GEN2.build(len(KOREAN) + 1)


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "best_accuracy.pth"
    torch.save(save_checkpoint_state(model, AT_32), path)
    return str(path)


def test_a_checkpoint_carries_its_reading_and_loads_as_easyocr_loads_it(model, checkpoint):
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert peek(checkpoint) == AT_32
    assert all(k.startswith("module.") for k in state) and len(state) == len(model.state_dict())
    # EasyOCR 1.7.2's CPU loader: every key less its first 7 characters into a new OrderedDict, strict.
    cpu = GEN2.build(len(KOREAN) + 1)
    cpu.load_state_dict(OrderedDict((k[7:], v) for k, v in state.items()))
    # Its GPU loader: the whole file into DataParallel(model), strict, _metadata included.
    gpu = torch.nn.DataParallel(GEN2.build(len(KOREAN) + 1))
    gpu.load_state_dict(state)
    for k, v in model.state_dict().items():
        assert torch.equal(cpu.state_dict()[k], v) and torch.equal(gpu.module.state_dict()[k], v)


def test_the_reading_is_read_without_torch(checkpoint):
    code = ("import sys\nfrom models.reading import peek\nr = peek(sys.argv[1])\n"
            "print(r.img_h, len(r.charset), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, checkpoint], capture_output=True, text=True, timeout=60,
                         check=True).stdout.split()
    assert out == ["32", str(len(KOREAN)), "False"]


def test_settings_that_contradict_the_reading_are_refused_naming_both(checkpoint):
    assert open_model(checkpoint)[1] == AT_32  # nothing given: the contract alone
    # Settings left at their defaults (height 80) say nothing; given ones that agree pass.
    assert open_model(checkpoint, TrainSettings(), set())[1] == AT_32
    assert open_model(checkpoint, settings(img_h=32), {"train.img_h", "train.charset"})[1] == AT_32
    for s, given, said in (
        (TrainSettings(img_h=80), {"train.img_h"}, "train.img_h 80 (the model's 32)"),
        (settings(preprocess="pad"), {"train.preprocess"}, "train.preprocess pad (the model's easyocr)"),
        (settings(model=ModelSettings(hidden_size=128)), {"train.model.hidden_size"},
         "train.model.hidden_size 128 (the model's 256)"),
        (settings(charset="english_g2"), {"train.charset"},
         "train.charset english_g2 (the model's korean_g2: 1008 characters"),
    ):
        with pytest.raises(HwocrError, match=r"best_accuracy.pth says how it is read \(None-VGG-BiLSTM-CTC at "
                           r"height 32, preprocess easyocr, 1008 characters \(korean_g2\)\), but --set asked for "
                           + said.replace("(", r"\(").replace(")", r"\)")):
            open_model(checkpoint, s, given, "--set")


def test_a_checkpoint_without_a_contract_is_read_only_with_its_settings(model, tmp_path):
    path = tmp_path / "foreign.pth"
    torch.save(model.state_dict(), path)
    assert peek(str(path)) is None
    with pytest.raises(HwocrError, match=r"foreign.pth carries no reading contract \(hwocr did not write it\): say "
                       r"how it is read, --set train.img_h=\.\.\. and --set train.charset=\.\.\."):
        open_model(str(path))
    with pytest.raises(HwocrError, match=r"say how it is read, --set train.charset=\.\.\. \(the height"):
        open_model(str(path), settings(img_h=48), {"train.img_h"})
    _, reading = open_model(str(path), settings(img_h=48), {"train.img_h", "train.charset"})
    assert (reading.img_h, reading.charset, reading.preprocess) == (48, KOREAN, "easyocr")


def test_easyocr_builtins_are_known_by_their_md5(tmp_path):
    path = resolve_pretrained("english_g2", download=False)
    _, reading = open_model(path)
    assert (reading.img_h, reading.charset, reading.pretrained) == (64, load_charset("english_g2"), "english_g2")
    with pytest.raises(HwocrError, match=r"english_g2.pth says how it is read .* asked for train.img_h 80 "
                       r"\(the model's 64\)"):
        open_model(path, TrainSettings(img_h=80), {"train.img_h"})


def test_a_bundle_states_the_reading_easyocr_reads(checkpoint, tmp_path):
    from models.bundle import ExportSettings, export_easyocr_fn

    export_easyocr_fn(checkpoint, str(tmp_path / "b"), ExportSettings(name="hwocr_b"))
    config = yaml.safe_load((tmp_path / "b" / "hwocr_b.yaml").read_text(encoding="utf-8"))
    assert config["imgH"] == 32 and config["hwocr"]["charset_name"] == "korean_g2"
    pth, reading = open_model(str(tmp_path / "b"))
    assert pth == str(tmp_path / "b" / "hwocr_b.pth") and reading == AT_32 and peek(pth) == AT_32
    # A bundle's reading is EasyOCR's: its yaml's keys rule, and every crop is read its way.
    config["imgH"] = 48
    (tmp_path / "b" / "hwocr_b.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    assert bundle_reading(str(tmp_path / "b"))[1].img_h == 48
    # A bundle hwocr did not write (no hwocr section) reads by EasyOCR's keys alone.
    del config["hwocr"]
    config["character_list"] = "abc"
    (tmp_path / "b" / "hwocr_b.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    reading = bundle_reading(str(tmp_path / "b"))[1]
    assert (reading.img_h, reading.charset, reading.network, reading.preprocess) == (48, "abc", ModelSettings(),
                                                                                      "easyocr")
    (tmp_path / "b" / "hwocr_b.yaml").write_text("imgH: 32\n", encoding="utf-8")
    with pytest.raises(HwocrError, match="hwocr_b.yaml: not an EasyOCR network yaml"):
        bundle_reading(str(tmp_path / "b"))


def test_resume_refuses_a_run_folder_trained_to_be_read_otherwise(tiny_lmdb, tmp_path):
    from models.trainer import train

    train(settings(num_iter=2, val_interval=2), [tiny_lmdb], tiny_lmdb, str(tmp_path), log=lambda m: None)
    assert json.loads(json.dumps(torch.load(tmp_path / "last.pth", weights_only=False)["reading"]))["img_h"] == 32
    with pytest.raises(HwocrError, match=r"cannot resume from .*last.pth: it was trained to be read otherwise "
                       r"\(img_h 32 \(now 40\)\)"):
        train(settings(num_iter=4, val_interval=2, img_h=40), [tiny_lmdb], tiny_lmdb, str(tmp_path),
              log=lambda m: None)
    assert {"best_accuracy.pth", "best_norm_ED.pth", "last.pth"} <= set(os.listdir(tmp_path))


def hwocr(*args, cwd):
    """The CLI in this process (its start-up, torch's import, is paid once), as a finished command."""
    from flows import cli

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def predictions(result: dict) -> list[str]:
    with open(result["predictions"], encoding="utf-8") as f:
        return [line.split("\t")[2] for line in f.read().splitlines()[1:]]


@pytest.mark.slow
@pytest.mark.parametrize("img_h", [64, 80])
def test_evaluate_with_no_flags_reads_what_easyocr_reads_from_the_bundle(tiny_lmdb, tmp_path, img_h):
    """`hwocr evaluate --model X --data Y`, nothing else: the checkpoint's own height, not the default 80, so its
    figure is the one EasyOCR gives for X's bundle, reading for reading (english_g2's start, briefly tuned)."""
    from models.trainer import train

    ckpt = tmp_path / "run" / "best_accuracy.pth"
    train(settings(num_iter=20, val_interval=20, img_h=img_h, pretrained="english_g2", lr=1e-4), [tiny_lmdb],
          tiny_lmdb, str(tmp_path / "run"), log=lambda m: None)
    runs = {}
    for name, args in (("checkpoint", ["--model", str(ckpt)]),
                       ("bundle", ["--model", str(tmp_path / "bundle")]),
                       ("easyocr", ["--model", str(tmp_path / "bundle"), "--engine", "easyocr", "--pages", "0"])):
        if name == "bundle":
            proc = hwocr("export", "--model", str(ckpt), "--out", str(tmp_path / "bundle"), cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr[-2000:]
        proc = hwocr("evaluate", *args, "--data", tiny_lmdb, "--json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    easyocr = runs["easyocr"]["easyocr"]["float"]["accuracy"]
    assert abs(runs["checkpoint"]["accuracy"] - easyocr) <= 0.1 and runs["bundle"]["accuracy"] == easyocr
    assert predictions(runs["checkpoint"]) == predictions(runs["bundle"]) == predictions(runs["easyocr"])
    assert sum(p != "" for p in predictions(runs["easyocr"])) >= 2  # real readings, not a blank model's
    assert yaml.safe_load((tmp_path / "bundle" / "hwocr_korean.yaml").read_text(encoding="utf-8"))["imgH"] == img_h
    # The default height, given, contradicts the contract of the model trained at 64.
    if img_h == 64:
        proc = hwocr("evaluate", "--model", str(ckpt), "--data", tiny_lmdb, "--set", "train.img_h=80", cwd=tmp_path)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "--set asked for train.img_h 80 (the model's 64)" in proc.stderr


def test_a_pretrained_file_with_nan_is_named_before_training(model, tmp_path):
    from models.pretrained import load_pretrained

    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["Prediction.bias"][3] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(HwocrError, match=r"nan.pth: 1 tensors hold NaN or infinite values \(first: Prediction.bias\)"):
        load_pretrained(GEN2.build(len(KOREAN) + 1), str(tmp_path / "nan.pth"), KOREAN)


def test_training_on_data_that_mostly_does_not_fit_its_charset_is_refused(tiny_lmdb, tmp_path):
    from models.trainer import train

    (tmp_path / "latin.txt").write_text("0123456789", encoding="utf-8")
    with pytest.raises(HwocrError, match=r"lmdb: 3 of 4 samples dropped \({'too_long': 0, 'out_of_charset': 3"):
        train(settings(num_iter=2, charset=str(tmp_path / "latin.txt")), [tiny_lmdb], tiny_lmdb, str(tmp_path / "r"),
              log=lambda m: None)
    assert not (tmp_path / "r" / "last.pth").exists()
