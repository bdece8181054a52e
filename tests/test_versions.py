"""pyproject.toml gives Prefect and MLflow as ranges, and both ends hold. .venv has the highest versions pip finds in
them, and the whole suite runs there; this test runs the suite's Prefect and MLflow parts again on the lowest, from
the overlay scripts/bootstrap.sh builds (.venv-lowest, on PYTHONPATH before .venv's packages)."""

import os
import pathlib
import subprocess
import sys

import pytest
from versions import lowest

pytestmark = pytest.mark.slow  # see pyproject.toml's markers

ROOT = pathlib.Path(__file__).resolve().parent.parent
OVERLAY = ROOT / ".venv-lowest"
# Prefect's caching (only changed stages run), a fine-tune tracked in MLflow and cached, `serve` on the temporary
# server stopped by SIGTERM, and the check that only public names of theirs are used.
PARTS = ["tests/test_dataset_flow.py::test_only_changed_stages_run",
         "tests/test_finetune.py::test_finetune_tracks_everything_and_caches",
         "tests/test_interrupt.py::test_signal_stops_serve[sigterm]", "tests/test_arms_length.py"]


def test_prefect_and_mlflow_parts_on_the_lowest_versions_allowed():
    assert OVERLAY.is_dir(), "HWOCR_PLAIN_VENV=1 bash scripts/bootstrap.sh builds .venv-lowest (scripts/test.sh does)"
    env = {**os.environ, "PYTHONPATH": str(OVERLAY)}
    ask = "import prefect, mlflow; print(prefect.__version__, mlflow.__version__)"
    found = subprocess.run([sys.executable, "-c", ask], env=env, capture_output=True, text=True, check=True)
    found = found.stdout.split()
    want = lowest()
    assert found == [want["prefect"], want["mlflow"]]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow or not slow",
                           *PARTS], env=env, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
