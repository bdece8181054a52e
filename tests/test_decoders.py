"""EasyOCR's three decoders (greedy, beamsearch, wordbeamsearch with a word list) scored side by side by
`hwocr evaluate --engine easyocr --decoder all`, each read by the real easyocr in its venv."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.test_export import EASYOCR_PYTHON


@pytest.mark.slow
def test_the_three_decoders_are_scored_side_by_side(trained, tiny_lmdb, tmp_path):
    from models.bundle import ExportSettings, export_easyocr_fn

    if not os.path.exists(EASYOCR_PYTHON):
        pytest.fail(f"{EASYOCR_PYTHON} is missing: scripts/bootstrap.sh creates it")
    bundle = export_easyocr_fn(trained, str(tmp_path / "bundle"), ExportSettings(name="hwocr_dec"))["dir"]
    data = tmp_path / "data"
    shutil.copytree(os.path.join(os.path.dirname(tiny_lmdb), "img"), data / "img")
    words = ["한글", "사랑", "Hello", "2024"]
    (data / "gt.txt").write_text("".join(f"img/{i}.png\t{w}\n" for i, w in enumerate(words)), encoding="utf-8")
    wordlist = tmp_path / "words.txt"
    wordlist.write_text("한글\n사랑\nÆble\n\nHello\n2024\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "evaluate", "--model", bundle, "--data", str(data),
                           "--engine", "easyocr", "--decoder", "all", "--words", str(wordlist), "--pages", "0",
                           "--out", str(tmp_path / "eval"), "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    e = json.loads(proc.stdout.strip().splitlines()[-1])["easyocr"]
    assert list(e["decoders"]) == ["greedy", "beamsearch", "wordbeamsearch"]
    for name, d in e["decoders"].items():
        assert 0 <= d["accuracy"] <= 100 and d["seconds_per_image"] > 0, name
    # greedy is recognize()'s default: the float reading again, to the same figures.
    assert {k: e["decoders"]["greedy"][k] for k in e["float"]} == e["float"]
    assert all(d["samples"] == 4 for d in e["decoders"].values())
    assert e["decoder_words"] == {"url": str(wordlist), "kept": 4, "dropped": 1, "first_dropped": "'Æble' ('Æ')"}
    with open(tmp_path / "eval" / "evaluation.json", encoding="utf-8") as f:
        assert json.load(f)["easyocr"]["decoders"] == e["decoders"]
