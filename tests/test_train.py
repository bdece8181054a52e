"""The training loop on CPU: it learns, it resumes exactly after a kill, it stops cleanly on NaN."""

import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from hwocr.errors import HwocrError
from models.pretrained import GEN2
from models.trainer import train
from tests.tiny import settings

pytestmark = pytest.mark.slow  # see pyproject.toml's markers


def test_overfits_a_tiny_set(tiny_run):
    result, logs = tiny_run["result"], tiny_run["logs"]
    assert result["best_accuracy"] == 100.0 and result["best_norm_ed"] == 1.0
    assert result["iterations"] == 240 and len(result["history"]) == 4
    assert any("Ground Truth" in m and "samples/s" not in m for m in logs)
    # The best checkpoint loads into EasyOCR's layout (keys carry module.).
    state = torch.load(tiny_run["dir"] / "best_accuracy.pth", weights_only=True)
    assert all(k.startswith("module.") for k in state)
    GEN2.build(1009).load_state_dict({k[7:]: v for k, v in state.items()})


_TRAIN = """
import sys
sys.path.insert(0, {root!r})
from models.trainer import train
from tests.tiny import settings
train(settings(num_iter=16, val_interval=2), [{lmdb!r}], {lmdb!r}, {out!r}, log=lambda m: None)
"""


def test_resume_after_kill_ends_with_the_same_weights(tiny_lmdb, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    killed_dir = tmp_path / "killed"
    code = _TRAIN.format(root=root, lmdb=tiny_lmdb, out=str(killed_dir))
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 120
    while not (killed_dir / "last.pth").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(killed_dir / "last.pth", weights_only=False)
    assert 2 <= state["iteration"] < 16
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)

    straight = tmp_path / "straight"
    train(settings(num_iter=16, val_interval=2), [tiny_lmdb], tiny_lmdb, str(straight), log=lambda m: None)
    a = torch.load(killed_dir / "last.pth", weights_only=False)
    b = torch.load(straight / "last.pth", weights_only=False)
    assert a["iteration"] == b["iteration"] == 16
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [h["accuracy"] for h in a["history"]] == [h["accuracy"] for h in b["history"]]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_lmdb, tmp_path):
    with pytest.raises(HwocrError, match=r"loss became nan at iteration \d+; training stopped, the last good "
                                         r"checkpoint is .*last\.pth \(iteration \d+\)"):
        train(settings(num_iter=50, val_interval=1, lr=1e12), [tiny_lmdb], tiny_lmdb, str(tmp_path), log=lambda m: None)
    state = torch.load(tmp_path / "last.pth", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_nan_between_validations_is_caught_at_the_next_log_and_never_saved(tiny_lmdb, tmp_path):
    """The loss is read back every log_every steps, not every step: the first bad iteration is still the one named,
    and nothing non-finite reaches a checkpoint."""
    logs = []
    with pytest.raises(HwocrError, match=r"loss became (nan|inf) at iteration (\d+); training stopped, no checkpoint "
                                         r"had been written yet") as e:
        train(settings(num_iter=50, val_interval=40, lr=1e12), [tiny_lmdb], tiny_lmdb, str(tmp_path), log=logs.append)
    bad_at = int(str(e.value).split("at iteration ")[1].split(";")[0])
    logged = [int(m.split(":")[0][5:]) for m in logs if m.startswith("iter ")]  # log_every is 4 here
    last_good = logged[-1] if logged else 0
    assert all(i % 4 == 0 for i in logged) and last_good < bad_at <= last_good + 4
    assert not (tmp_path / "last.pth").exists() and not (tmp_path / "best_accuracy.pth").exists()


def test_corrupt_resume_state_is_a_clear_error(tiny_lmdb, tmp_path):
    (tmp_path / "last.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(HwocrError, match=r"cannot resume from .*last\.pth"):
        train(settings(num_iter=2, val_interval=1), [tiny_lmdb], tiny_lmdb, str(tmp_path), log=lambda m: None)


def test_time_budget_stop_still_validates_and_saves(tiny_lmdb, tmp_path):
    result = train(settings(num_iter=10_000, val_interval=5_000, max_minutes=0.05), [tiny_lmdb], tiny_lmdb,
                   str(tmp_path), log=lambda m: None)
    assert 0 < result["iterations"] < 10_000
    assert result["history"][-1]["iteration"] == result["iterations"]
    assert (tmp_path / "best_accuracy.pth").exists() and (tmp_path / "last.pth").exists()


def test_cosine_schedule_decays_the_lr_over_the_run(tiny_lmdb, tmp_path):
    from models.trainer import lr_factor

    assert lr_factor("constant", 0.9) == 1.0
    assert lr_factor("cosine", 0.0) == 1.0 and lr_factor("cosine", 1.0) == 0.0 and lr_factor("cosine", 2.0) == 0.0
    assert lr_factor("cosine", 0.5) == pytest.approx(0.5)
    result = train(settings(num_iter=8, val_interval=4, lr_schedule="cosine"), [tiny_lmdb], tiny_lmdb,
                   str(tmp_path), log=lambda m: None)
    # The lr of step i (0-based) is set at progress i/num_iter: the last of each window is what history records.
    assert [h["lr"] for h in result["history"]] == pytest.approx([1e-3 * lr_factor("cosine", p)
                                                                  for p in (3 / 8, 7 / 8)])
    constant = train(settings(num_iter=4, val_interval=4), [tiny_lmdb], tiny_lmdb, str(tmp_path / "c"),
                     log=lambda m: None)
    assert constant["history"][-1]["lr"] == 1e-3


def test_time_budget_spans_a_resume(tiny_lmdb, tmp_path):
    train(settings(num_iter=3, val_interval=3), [tiny_lmdb], tiny_lmdb, str(tmp_path), log=lambda m: None)
    state = torch.load(tmp_path / "last.pth", weights_only=False)
    state["elapsed_s"] = 3600.0  # an hour already trained: a 1-minute budget is spent before the resume
    torch.save(state, tmp_path / "last.pth")
    logs = []
    result = train(settings(num_iter=10_000, val_interval=5_000, max_minutes=1), [tiny_lmdb], tiny_lmdb,
                   str(tmp_path), log=logs.append)
    assert result["iterations"] == 3
    assert any("time budget of 1.0 minutes reached at iteration 3" in m for m in logs)


def _weights(path):
    state = torch.load(path, weights_only=False)
    return state["model"] if "model" in state else {k.removeprefix("module."): v for k, v in state.items()}


def test_freeze_keeps_a_stage_as_loaded(tiny_lmdb, tmp_path):
    start = tmp_path / "start"
    train(settings(num_iter=4, val_interval=4), [tiny_lmdb], tiny_lmdb, str(start), log=lambda m: None)
    loaded = _weights(start / "best_accuracy.pth")

    def run(name, **over):
        logs = []
        train(settings(pretrained=str(start / "best_accuracy.pth"), num_iter=6, val_interval=3, **over),
              [tiny_lmdb], tiny_lmdb, str(tmp_path / name), log=logs.append)
        return _weights(tmp_path / name / "last.pth"), logs

    whole, logs = run("whole", freeze=["feature_extraction"])
    vgg = [k for k in loaded if k.startswith("FeatureExtraction.")]
    assert any("running_mean" in k for k in vgg)  # BatchNorm statistics are kept too
    assert all(torch.equal(whole[k], loaded[k]) for k in vgg)
    assert not torch.equal(whole["SequenceModeling.0.rnn.weight_ih_l0"], loaded["SequenceModeling.0.rnn.weight_ih_l0"])
    assert any("feature_extraction frozen" in m for m in logs)

    part, logs = run("part", freeze=["feature_extraction", "sequence_modeling"], freeze_iterations=3)
    assert not torch.equal(part["FeatureExtraction.ConvNet.0.weight"], loaded["FeatureExtraction.ConvNet.0.weight"])
    assert any("iteration 3: feature_extraction, sequence_modeling unfrozen" in m for m in logs)


def test_early_stop_after_patience(tiny_lmdb, tmp_path):
    logs = []
    # An lr this small changes nothing: validation never improves on its first value.
    result = train(settings(num_iter=50, val_interval=1, lr=1e-12, early_stop_patience=2), [tiny_lmdb], tiny_lmdb,
                   str(tmp_path), log=logs.append)
    assert result["iterations"] == 3 and len(result["history"]) == 3
    assert any("early stop at iteration 3: accuracy has not improved for 2 validations" in m for m in logs)


def test_freeze_refused_under_data_parallel():
    with pytest.raises(ValueError, match="freeze is not supported with processes > 1"):
        settings(freeze=["feature_extraction"], processes=2)


def test_auto_precision_is_bf16_only_on_a_cpu_with_bf16_units():
    from models.trainer import autocast_dtype, cpu_has_bf16

    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is (torch.bfloat16 if cpu_has_bf16() else None)
    assert autocast_dtype("auto", torch.device("cuda")) is torch.float16
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", cpu) is torch.bfloat16


def test_bf16_on_a_cpu_without_bf16_units_warns(tiny_lmdb, tmp_path):
    from models.trainer import cpu_has_bf16

    logs = []
    train(settings(num_iter=1, val_interval=1, precision="bf16"), [tiny_lmdb], tiny_lmdb, str(tmp_path),
          log=logs.append)
    warned = any("bf16 on a CPU without AVX512-BF16 or AMX" in m for m in logs)
    assert warned == (not cpu_has_bf16())


def test_auto_loader_workers_leave_the_step_a_core(monkeypatch):
    from models.distributed import World
    from models.trainer import loader_workers

    cuda, auto = torch.device("cuda"), settings(loader_workers="auto")
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for cores, workers in ((2, 1), (1, 1), (6, 5), (16, 8), (64, 8)):
        monkeypatch.setattr(os, "cpu_count", lambda c=cores: c)
        assert loader_workers(auto, cuda, World()) == workers, cores
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert loader_workers(auto, cuda, World(size=4)) == 3  # four processes share the 16 cores
    assert loader_workers(auto, torch.device("cpu"), World()) == 0
    assert loader_workers(settings(loader_workers=3), torch.device("cpu"), World()) == 3


def test_resume_with_loader_workers_is_bit_identical(tiny_lmdb, tmp_path):
    """Worker processes decode batches ahead; a run stopped and resumed with them ends on the in-process run's
    weights, bit for bit (the checkpoint holds the cursor of the last batch trained on, not of those decoded)."""
    straight = tmp_path / "straight"
    train(settings(num_iter=6, val_interval=3, loader_workers=0), [tiny_lmdb], tiny_lmdb, str(straight),
          log=lambda m: None)
    resumed, logs = tmp_path / "resumed", []
    first = train(settings(num_iter=3, val_interval=3, loader_workers=2), [tiny_lmdb], tiny_lmdb, str(resumed),
                  log=lambda m: None)
    assert first["iterations"] == 3
    train(settings(num_iter=6, val_interval=3, loader_workers=2), [tiny_lmdb], tiny_lmdb, str(resumed),
          log=logs.append)
    assert any("resumed from" in m and "iteration 3" in m for m in logs)
    a = torch.load(straight / "last.pth", weights_only=False)
    b = torch.load(resumed / "last.pth", weights_only=False)
    assert a["iteration"] == b["iteration"] == 6 and a["loader"] == b["loader"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_ema_update_averages_weights_and_buffers():
    from models.trainer import ema_decay_at, ema_update

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    model(torch.randn(4, 3))  # moves the running statistics and the batch count
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    ema_update(ema, model, 0.75)
    for k, v in ema.state_dict().items():
        want = model.state_dict()[k] if not v.is_floating_point() else 0.75 * before[k] + 0.25 * model.state_dict()[k]
        assert torch.allclose(v, want), k
    assert int(ema.state_dict()["1.num_batches_tracked"]) == 1
    assert ema_decay_at(0.999, 0) == pytest.approx(0.1) and ema_decay_at(0.999, 10**6) == 0.999


def test_ema_validates_keeps_and_resumes_the_average(tiny_lmdb, tmp_path):
    one = tmp_path / "one"
    lines = []
    result = train(settings(num_iter=3, val_interval=3, ema_decay=0.9), [tiny_lmdb], tiny_lmdb, str(one),
                   log=lines.append)
    # validation scores the raw weights beside the average
    (entry,) = result["history"]
    assert 0 <= entry["raw_accuracy"] <= 1 and 0 <= entry["raw_norm_ed"] <= 1
    assert math.isfinite(entry["raw_valid_loss"]) and entry["raw_valid_loss"] != entry["valid_loss"]
    assert any(line.startswith("Raw_accuracy") for text in lines for line in text.splitlines())
    last = torch.load(one / "last.pth", weights_only=False)
    best = _weights(one / "best_accuracy.pth")
    assert last["ema"].keys() == last["model"].keys() == best.keys()
    assert all(torch.equal(best[k], last["ema"][k]) for k in best)  # the checkpoint kept is the average
    assert not torch.equal(best["Prediction.weight"], last["model"]["Prediction.weight"])
    # Resumed after 3, the run ends with the straight run's weights and average, bit for bit.
    train(settings(num_iter=6, val_interval=3, ema_decay=0.9), [tiny_lmdb], tiny_lmdb, str(one), log=lambda m: None)
    straight = tmp_path / "straight"
    train(settings(num_iter=6, val_interval=3, ema_decay=0.9), [tiny_lmdb], tiny_lmdb, str(straight),
          log=lambda m: None)
    a = torch.load(one / "last.pth", weights_only=False)
    b = torch.load(straight / "last.pth", weights_only=False)
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
