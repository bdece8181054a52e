"""EasyOCR's own venv, from hwocr's side: find its Python, name a bundle, and run models/easyocr_read.py or
models/easyocr_pages.py there (they import no hwocr module)."""

from __future__ import annotations

import os
import tempfile

from hwocr.errors import HwocrError

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = [os.path.join(HERE, "easyocr_read.py"), os.path.join(HERE, "easyocr_pages.py")]


def easyocr_python() -> str:
    py = os.environ.get("HWOCR_EASYOCR_PYTHON", os.path.join(os.path.dirname(HERE), ".venv-easyocr", "bin", "python"))
    if not os.path.exists(py):
        raise HwocrError(f"the easyocr engine runs EasyOCR from {py}, which is missing: scripts/bootstrap.sh creates "
                         "it, or set HWOCR_EASYOCR_PYTHON to a Python that imports easyocr")
    return py


def bundle_name(bundle: str) -> str:
    names = [f[:-5] for f in os.listdir(bundle) if f.endswith(".yaml")] if os.path.isdir(bundle) else []
    if len(names) != 1 or not os.path.exists(os.path.join(bundle, names[0] + ".pth")):
        raise HwocrError(f"{bundle}: not an EasyOCR bundle (one NAME.yaml, NAME.py and NAME.pth; see hwocr export)")
    return names[0]


def run_in_easyocr(script: str, bundle: str, name: str, paths: list[str], quantize: bool = False,
                   batch: int = 0) -> list:
    """One JSON value per path from models/<script> (easyocr_read.py, easyocr_pages.py) run by the real easyocr in
    its own venv with the bundle; PYTHONPATH cleared, so that hwocr's venv does not leak into EasyOCR's."""
    import json
    import subprocess

    py = easyocr_python()
    path = os.path.join(HERE, script)
    with tempfile.TemporaryDirectory(prefix="hwocr-easyocr-") as d:
        list_file = os.path.join(d, "paths.txt")
        with open(list_file, "w", encoding="utf-8") as f:
            f.write("".join(p + "\n" for p in paths))
        cmd = [py, path, bundle, name, list_file] + (["--quantize"] if quantize else []) + (
            ["--batch", str(batch)] if batch else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    if proc.returncode != 0 or len(lines) != len(paths):
        err = proc.stderr.strip().splitlines() or ["?"]
        if any("No module named 'easyocr'" in ln for ln in err):
            raise HwocrError(f"{py} does not import easyocr: scripts/bootstrap.sh installs it into .venv-easyocr "
                             "(torch 2.14.1, torchvision 0.29.1, easyocr 1.7.2)")
        raise HwocrError(f"EasyOCR could not read with {bundle}: {err[-1]}")
    return [json.loads(ln) for ln in lines]
