"""The repository passes `ruff check` with the settings in pyproject.toml's [tool.ruff]."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL = "pip install -e '.[dev]' (scripts/bootstrap.sh installs the dev extras, ruff among them)"


def ruff_command() -> list[str]:
    # The venv's own ruff, the version pyproject.toml pins, not whichever one PATH has: rules change by release.
    try:
        import ruff  # noqa: F401 - the wheel ships the binary; `python -m ruff` runs it
    except ImportError:
        pytest.fail(f"ruff is not installed in {sys.prefix}: {INSTALL}")
    return [sys.executable, "-m", "ruff"]


def test_ruff_check_is_clean():
    # --no-cache: nothing written into the checkout. ruff reads pyproject.toml and skips what .gitignore lists.
    proc = subprocess.run([*ruff_command(), "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (f"ruff check found problems (`ruff check --fix` repairs those marked [*]):\n"
                                  f"{proc.stdout}{proc.stderr}")
