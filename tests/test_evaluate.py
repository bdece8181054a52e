"""hwocr evaluate: metrics agree with the predictions it writes; LMDB and gt.txt folders give the same result."""

import json
import os
import subprocess
import sys

import pytest

from models import metrics
from models.evaluation import evaluate_checkpoint
from models.train_settings import TrainSettings
from models.trainer import train

S = TrainSettings(pretrained="none", img_h=32, img_w=100, batch_size=4, optimizer="adam", lr=1e-3, threads=1,
                  channels_last=False, num_iter=40, val_interval=40)


@pytest.fixture(scope="module")
def checkpoint(tiny_lmdb, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    train(S, [tiny_lmdb], tiny_lmdb, str(out), log=lambda m: None)
    return str(out / "best_accuracy.pth")


@pytest.mark.slow
def test_report_matches_predictions(tiny_lmdb, checkpoint, tmp_path):
    report = evaluate_checkpoint(checkpoint, tiny_lmdb, str(tmp_path / "a"), S)
    rows = [line.split("\t") for line in open(report["predictions"], encoding="utf-8").read().splitlines()[1:]]
    assert [r[0] for r in rows] == [f"image-{i:09d}" for i in range(1, 5)]
    gts, preds = [r[1] for r in rows], [r[2] for r in rows]
    assert report["samples"] == 4
    assert report["accuracy"] == metrics.word_accuracy(preds, gts)
    assert report["cer"] == metrics.cer(preds, gts) and report["norm_ed"] == metrics.norm_ed(preds, gts)
    assert set(report["by_length"]) == {2, 4, 5} and report["by_font"] is None
    if report["accuracy"] < 100:
        assert os.path.getsize(report["worst_failures"]) > 0
    # The same images as a folder with gt.txt give the same scores, named by their paths.
    folder = os.path.dirname(tiny_lmdb)
    again = evaluate_checkpoint(checkpoint, folder, str(tmp_path / "b"), S)
    assert (again["accuracy"], again["cer"]) == (report["accuracy"], report["cer"])
    assert open(again["predictions"], encoding="utf-8").read().splitlines()[1].startswith("img/0.png\t한글\t")


@pytest.mark.slow
def test_cli_json(tiny_lmdb, checkpoint, tmp_path):
    """Without --out, each model and data get their own folder: a second evaluation keeps the first one's."""
    folders = []
    for data in (tiny_lmdb, os.path.dirname(tiny_lmdb)):  # the LMDB, then the folder with its gt.txt
        proc = subprocess.run([sys.executable, "-m", "flows.cli", "evaluate", "--model", checkpoint, "--data", data,
                               "--set", "train.img_h=32", "--json"], capture_output=True, text=True, timeout=300,
                              cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert set(result) == {"samples", "accuracy", "norm_ed", "cer", "predictions"} and result["samples"] == 4
        folders.append(os.path.dirname(result["predictions"]))
    assert len(set(folders)) == 2
    assert all(os.path.dirname(f) == str(tmp_path / "hwocr-out" / "evaluation") for f in folders)
    assert all(os.path.exists(os.path.join(f, "predictions.tsv")) for f in folders)


def test_wrong_architecture_is_a_clear_error(tiny_lmdb, tmp_path):
    import torch

    from hwocr.errors import HwocrError
    from models.pretrained import GEN2

    torch.save(GEN2.build(50).state_dict(), tmp_path / "small.pth")
    # No reading contract (hwocr did not write it): it is read only with its height and characters given ...
    with pytest.raises(HwocrError, match=r"small\.pth carries no reading contract .*--set train.img_h=\.\.\. and "
                       r"--set train.charset=\.\.\."):
        evaluate_checkpoint(str(tmp_path / "small.pth"), tiny_lmdb, str(tmp_path / "o"), S)
    # ... and then it must fit them.
    with pytest.raises(HwocrError, match=r"small\.pth does not fit None-VGG-BiLSTM-CTC, output_channel 256, "
                       r"hidden_size 256 with 1009 classes \(its reading\): 2 mismatching keys, first: "
                       r"Prediction.weight"):
        evaluate_checkpoint(str(tmp_path / "small.pth"), tiny_lmdb, str(tmp_path / "o"), S,
                            {"train.img_h", "train.charset"})


def test_retention_counts_what_the_start_read_and_the_fine_tuned_model_lost(tmp_path):
    from models.evaluation import retention

    head = "path\tlabel\tprediction\tconfidence\n"
    start, tuned = tmp_path / "start.tsv", tmp_path / "tuned.tsv"
    start.write_text(head + "a\t학교\t학교\t0.9\nb\tHello\tHello\t0.9\nc\t2024\t2024\t0.8\nd\t바다\t바\t0.2\n",
                     encoding="utf-8")
    tuned.write_text(head + "a\t학교\t학교\t0.9\nb\tHello\tHell0\t0.5\nc\t2024\t2024\t0.8\nd\t바다\t바다\t0.7\n",
                     encoding="utf-8")
    assert retention(str(start), str(tuned)) == {"start_correct": 3, "still_correct": 2, "forgotten": 1,
                                                 "retained": 200 / 3}
    start.write_text(head + "a\t학교\t학\t0.1\n", encoding="utf-8")
    assert retention(str(start), str(tuned))["retained"] is None
