"""A non-dev install (`pip install .`, as both Docker images run it) has every library hwocr imports."""

import subprocess
import sys

import grimp
import pytest

from hwocr import hashing

pytestmark = pytest.mark.slow  # needs .venv-plain, which scripts/test.sh builds

OWN_VENV = {"easyocr"}  # models/easyocr_read.py runs in .venv-easyocr, never in hwocr's environment


def third_party_imports() -> set[str]:
    """Top-level names of every module the package's sources import, at any depth, less stdlib and our own."""
    graph = grimp.build_graph(*hashing.project_packages(), include_external_packages=True, cache_dir=None)
    external = {m for m in graph.modules if graph.is_module_squashed(m)}
    return external - set(sys.stdlib_module_names) - OWN_VENV - {"__future__"}


def test_plain_install_imports_what_hwocr_imports(plain_python):
    needed = third_party_imports()
    # The scan sees what it should: the libraries the design names, and those the issue found undeclared.
    assert {"prefect", "torch", "trdg", "lmdb", "PIL", "pydantic", "mlflow", "cv2"} <= needed
    script = ("import importlib, sys\nmissing = []\nfor name in sys.argv[1:]:\n    try:\n"
              "        importlib.import_module(name)\n    except ImportError as e:\n"
              "        missing.append(f'{name}: {e}')\nprint('\\n'.join(missing))")
    proc = subprocess.run([plain_python, "-c", script, *sorted(needed), "boto3", "s3fs"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"not importable in a plain install:\n{proc.stdout}"
    # And it is a plain install: the dev extras (moto brings boto3 along) are absent.
    dev = subprocess.run([plain_python, "-c", "import moto"], capture_output=True, text=True, timeout=60)
    assert dev.returncode != 0 and "No module named 'moto'" in dev.stderr
