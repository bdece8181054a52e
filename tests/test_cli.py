"""The command line: the whole pipeline from one command, and bad input (exit status 2, the problem named)."""

import os
import socket
import subprocess
import sys

import pytest


def hwocr(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def test_unknown_setting_key(tmp_path):
    p = hwocr("data", "--out", str(tmp_path / "o"), "--set", "render.cont=5")
    assert p.returncode == 2
    assert "unknown setting 'render.cont' (did you mean render.count?)" in p.stderr
    assert not (tmp_path / "o").exists()


LATIN = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # fonts-dejavu-core: draws no Hangul


@pytest.mark.parametrize("args, message", [
    (["run", "--set", "train.batch_size=0"], "train.batch_size: Input should be greater than 0"),
    (["data", "--set", "render.cont=5"], "unknown setting 'render.cont'"),
    (["export", "--model", "m.pth", "--out", "b", "--name", "1abc"], "not starting with a digit), and it starts with"),
    (["pack", "--gt", "gt.txt", "--images", ".", "--out", "db"], "gt.txt line 1: expected 'path<TAB>label'"),
    (["data", "--out", "o", "--set", "render.fonts=[nofont.ttf]"], "font file 'nofont.ttf' does not exist"),
    (["run", "--out", "o", "--set", f"render.fonts=[{LATIN}]"], "(DejaVu Sans Book) draws no Hangul"),
    (["data", "--out", "o", "--set", "render.words=binary.txt"], "binary.txt looks binary (NUL byte at offset 2)"),
    (["data", "--out", "o", "--set", "render.words=nowords.txt"], "word list nowords.txt does not exist"),
    (["run", "--out", "o", "--set", "render.words=."], "word list . is a folder"),
    (["train", "--out", "o"], "lmdb/train holds no LMDB: run `hwocr data` with the same --out"),
    (["data", "--out", "gt.txt"], "gt.txt' is a file; the output is a folder"),
    (["run", "--set", "render.count=abc"], "(got 'abc', from --set render.count=abc)"),
    (["data", "--set", "render.count=1000000000000"], "render.count: Input should be less than or equal to"),
    (["pack", "--gt", "cp949.txt", "--images", ".", "--out", "db"], "decodes as cp949: convert it with `iconv"),
])
def test_bad_input_fails_before_prefect_torch_or_mlflow_load(tmp_path, args, message):
    """Settings, then the words, fonts and data they name, are checked first: a typo costs a second or two, not
    Prefect's and torch's start-up; nothing is written."""
    (tmp_path / "gt.txt").write_text("a.png no tab\n", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"ab\x00\x01")
    (tmp_path / "cp949.txt").write_bytes("a.png\t한글\n".encode("cp949"))
    before = sorted(os.listdir(tmp_path))
    code = ("import sys; from flows.cli import main; rc = main(sys.argv[1:]); "
            "print(sorted(m for m in ('prefect', 'torch', 'mlflow', 'trdg') if m in sys.modules)); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("hwocr: error: ")
    assert p.stdout.strip() == "[]"
    assert sorted(os.listdir(tmp_path)) == before


def test_zero_count(tmp_path):
    p = hwocr("data", "--out", str(tmp_path / "o"), "--set", "render.val_count=0")
    assert p.returncode == 2 and "render.val_count: Input should be greater than 0 (got 0, from --set" in p.stderr
    assert not (tmp_path / "o").exists()


def test_pack_gt_errors_exit_2(tmp_path):
    (tmp_path / "gt.txt").write_text("a.png label with no tab\n", encoding="utf-8")
    p = hwocr("pack", "--gt", str(tmp_path / "gt.txt"), "--images", str(tmp_path), "--out", str(tmp_path / "db"))
    assert p.returncode == 2 and "gt.txt line 1: expected 'path<TAB>label', found no tab" in p.stderr
    assert not (tmp_path / "db").exists()


@pytest.mark.slow
def test_run_end_to_end_then_cached(tmp_path):
    """README command 1 in small: data, fine-tune, evaluation, export and MLflow, from one command."""
    import json

    import mlflow

    from tests.conftest import FONTS

    words = tmp_path / "words.txt"
    words.write_text("한글\n사랑\n바다\n하늘\n", encoding="utf-8")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["run", "--config", "quick", "--out", str(tmp_path / "out"), "--set", f"render.words={words}",
            "--set", "render.count=16", "--set", "render.val_count=8", "--set", "render.min_shard_images=1",
            "--set", f"render.fonts=[{FONTS['pen']}]", "--set", "train.img_h=32", "--set", "train.batch_size=8",
            "--set", "train.num_iter=4", "--set", "train.val_interval=2", "--set", "train.threads=1",
            "--set", f"tracking.tracking_uri={uri}", "--set", "tracking.registered_model=''",
            "--set", "render.effects.ink.enabled=true"]
    first = subprocess.run([sys.executable, "-m", "flows.cli", *args, "--json"], capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads(first.stdout.strip().splitlines()[-1])
    assert result["dataset"]["splits"]["train"]["samples"] == 16
    assert result["train"]["iterations"] == 4
    val = result["train"]["evaluation"]["val"]
    assert val["samples"] == 8 and 0 <= val["accuracy"] <= 100 and set(val["by_font"]) == {"Nanum Pen Script Regular"}
    bundle = result["export"]
    assert {os.path.basename(bundle[k]) for k in ("pth", "yaml", "py")} == {
        "hwocr_korean.pth", "hwocr_korean.yaml", "hwocr_korean.py"}
    assert all(os.path.exists(bundle[k]) for k in ("pth", "yaml", "py", "readme"))
    client = mlflow.MlflowClient(uri)
    logged = {a.path for a in client.list_artifacts(result["train"]["mlflow_run_id"], "easyocr")}
    assert "easyocr/hwocr_korean.pth" in logged and "easyocr/hwocr_korean.yaml" in logged
    # The run says what data it trained on: effects, glyph jitter and fonts as tags, the render settings in full.
    run = client.get_run(result["train"]["mlflow_run_id"])
    assert {k: run.data.tags[k] for k in ("render.effects", "render.glyph_jitter", "render.test_fonts")} == {
        "render.effects": "ink", "render.glyph_jitter": "off", "render.test_fonts": "none"}
    assert run.data.tags["render.train_fonts"] == "Nanum Pen Script Regular"
    logged = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/dataset/render.json")
    assert logged["render"]["effects"]["ink"]["enabled"] is True and logged["words"]["count"] == 4
    # The bundle was read by the real easyocr, float and int8, beside hwocr's own figure (no test split: val).
    check = result["easyocr"]
    assert check["split"] == "val" and set(check) >= {"float", "int8", "int8_agreement", "gap", "mismatch"}
    assert check["gap"] == check["float"]["accuracy"] - val["accuracy"]
    assert check["mismatch"] == (abs(check["gap"]) > 1)
    assert run.data.metrics["val_easyocr_float_accuracy"] == check["float"]["accuracy"]
    assert run.data.metrics["val_easyocr_int8_cer"] == check["int8"]["cer"]
    assert run.data.tags["hwocr.easyocr_mismatch"] == str(check["mismatch"]).lower()
    assert check["pages"]["words"] == 8 and run.data.metrics["val_easyocr_pages_cer"] == check["pages"]["cer"]
    assert check["batch"]["samples"] == 8
    assert run.data.metrics["val_easyocr_batch_agreement"] == check["batch"]["agreement"]

    # conftest keeps Prefect at WARNING; a user's default (INFO) shows what the run log holds.
    again = subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PREFECT_LOGGING_LEVEL": "INFO"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trained 4 iterations (cached)" in again.stdout
    assert f"mlflow ui --backend-store-uri {uri}" in again.stdout
    assert "val: 8 samples, accuracy" in again.stdout
    assert "read by EasyOCR itself, val: accuracy" in again.stdout
    # Quiet by default: Prefect's task lines go to the log file named at the end, not to the console.
    assert "Finished in state" not in again.stderr
    [log] = [line.removeprefix("log: ") for line in again.stdout.splitlines() if line.startswith("log: ")]
    assert os.path.dirname(log) == str(tmp_path / "out" / "logs")
    with open(log, encoding="utf-8") as f:
        assert "Finished in state Cached" in f.read()

    # Another machine's MLflow (a fresh store) with the same outputs: the cached training is reused, and its run,
    # tracked elsewhere, is named instead of failing the pipeline.
    other = f"sqlite:///{tmp_path / 'other.db'}"
    elsewhere = subprocess.run([sys.executable, "-m", "flows.cli",
                                *[f"tracking.tracking_uri={other}" if a == f"tracking.tracking_uri={uri}" else a
                                  for a in args]], capture_output=True, text=True, timeout=600)
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
    assert "trained 4 iterations (cached)" in elsewhere.stdout
    assert f"MLflow: the cached training was tracked in another store than {other}" in elsewhere.stdout
    assert f"MLflow run {result['train']['mlflow_run_id']} is not in {other}" in elsewhere.stderr
    fresh = mlflow.MlflowClient(other)
    assert fresh.search_runs([e.experiment_id for e in fresh.search_experiments()]) == []


def test_export_bad_name_exit_2(tmp_path):
    p = hwocr("export", "--model", str(tmp_path / "x.pth"), "--out", str(tmp_path / "b"), "--name", "my-model")
    assert p.returncode == 2 and "export name 'my-model' must be an ASCII Python identifier" in p.stderr
    assert not (tmp_path / "b").exists()


def test_unreachable_prefect_api_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    p = subprocess.run([sys.executable, "-m", "flows.cli", "data", "--out", str(tmp_path / "o")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert f"Prefect API at http://127.0.0.1:{port}/api is unreachable" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "o").exists()
