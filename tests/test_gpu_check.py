"""bench/gpu.sh's CPU fallback end to end: it builds its LMDBs with hwocr's renderer, trains, runs the forced
one-process DDP path on gloo, and prints figures that exist and make sense."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_gpu_check_cpu_fallback_prints_sane_figures(tmp_path):
    proc = subprocess.run(["sh", os.path.join(ROOT, "bench", "gpu.sh"), "--cpu", "--data", str(tmp_path / "data")],
                          env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = dict(re.findall(r"^([^:\n]+): (.+)$", proc.stdout, re.M))
    assert out["device"].startswith("cpu (fallback")
    assert out["precision"] == "fp32"
    assert 0 < float(out["samples/s"]) < 10_000
    assert 50 < float(out["peak rss MiB"]) < 16_000
    assert 0 <= float(out["loader share"].rstrip("%")) <= 100
    losses = {int(k.split()[-1]): float(v) for k, v in out.items() if k.startswith("loss at ")}
    assert sorted(losses) == [1, 2, 3, 4, 5, 6] and all(0 < v < 1e4 for v in losses.values())
    assert "data-parallel over 1 processes (gloo, 2 global BatchNorm layers)" in out["ddp"]
    ddp = re.findall(r"^ddp loss at (\d+): (\S+) \(without DDP (\S+)\)$", proc.stdout, re.M)
    assert len(ddp) == 3  # one process under DDP trains as the plain loop does
    assert all(float(a) == pytest.approx(float(b), rel=1e-4) for _, a, b in ddp)
    assert (tmp_path / "data" / "train" / "data.mdb").exists()
