"""pyproject.toml gives Prefect and MLflow as ranges, and both ends hold. .venv has the versions pip resolves in them,
and the whole suite runs there; this test runs the suite's Prefect and MLflow parts again on the lowest and on the
highest versions, from the overlays scripts/bootstrap.sh builds (.venv-lowest and .venv-highest, on PYTHONPATH
before .venv's packages). On the highest end it runs the parts of the packages whose version differs from .venv's."""

import importlib.metadata
import os
import pathlib
import subprocess
import sys

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from versions import lowest, ranges

pytestmark = pytest.mark.slow  # see pyproject.toml's markers

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Prefect's caching (only changed stages run), `serve` on the temporary server stopped by SIGTERM, a fine-tune
# tracked in MLflow and cached, and the check that only public names of theirs are used.
PARTS = {"prefect": ["tests/test_dataset_flow.py::test_only_changed_stages_run",
                     "tests/test_interrupt.py::test_signal_stops_serve[sigterm]"],
         "mlflow": ["tests/test_finetune.py::test_finetune_tracks_everything_and_caches"]}
ALWAYS = ["tests/test_arms_length.py"]


@pytest.mark.parametrize("end", ["lowest", "highest"])
def test_prefect_and_mlflow_parts_on_both_ends_of_their_ranges(end):
    overlay = ROOT / f".venv-{end}"
    assert overlay.is_dir(), f"HWOCR_PLAIN_VENV=1 bash scripts/bootstrap.sh builds .venv-{end} (scripts/test.sh does)"
    env = {**os.environ, "PYTHONPATH": str(overlay)}
    ask = "import prefect, mlflow; print(prefect.__version__, mlflow.__version__)"
    found = subprocess.run([sys.executable, "-c", ask], env=env, capture_output=True, text=True, check=True)
    found = dict(zip(["prefect", "mlflow"], found.stdout.split()))
    here = {name: importlib.metadata.version(name) for name in found}
    if end == "lowest":
        assert found == lowest()
        parts = [part for name in PARTS for part in PARTS[name]]
    else:
        for name, spec in ranges().items():
            assert Version(found[name]) in SpecifierSet(spec), (name, found[name], spec)
            assert Version(found[name]) >= Version(here[name]), (name, found[name], here[name])
        parts = [part for name in PARTS if found[name] != here[name] for part in PARTS[name]]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow or not slow",
                           *parts, *ALWAYS], env=env, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
