"""EasyOCR's own venv, from hwocr's side: find its Python, name a bundle, and run models/easyocr_read.py there
(it imports no hwocr module)."""

from __future__ import annotations

import os
import tempfile

from hwocr.errors import HwocrError

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "easyocr_read.py")


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


def run_in_easyocr(bundle: str, name: str, jobs: list[dict], seconds: dict | None = None) -> list[list]:
    """One JSON value per path of each job (models/easyocr_read.py's jobs: {"read": "recognize", "batched" or
    "readtext", "quantize": bool, "paths": [...]}, "batch": N for batched), all read in one process of the real
    easyocr in its own venv with the bundle: its start-up costs seconds. PYTHONPATH cleared, so that hwocr's venv
    does not leak into EasyOCR's. seconds, when given, gets each job's reading time by job index."""
    import json
    import subprocess

    if not any(job["paths"] for job in jobs):
        return [[] for _ in jobs]
    py = easyocr_python()
    with tempfile.TemporaryDirectory(prefix="hwocr-easyocr-") as d:
        jobs_file = os.path.join(d, "jobs.json")
        with open(jobs_file, "w", encoding="utf-8") as f:
            json.dump(jobs, f, ensure_ascii=False)
        proc = subprocess.run([py, SCRIPT, bundle, name, jobs_file], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": ""})
    out: list[list] = [[] for _ in jobs]
    for line in proc.stdout.splitlines():
        if line.startswith("[\"seconds\""):
            _, index, took = json.loads(line)
            if seconds is not None:
                seconds[index] = took
        elif line.startswith("["):
            index, value = json.loads(line)
            out[index].append(value)
    if proc.returncode != 0 or [len(v) for v in out] != [len(job["paths"]) for job in jobs]:
        err = proc.stderr.strip().splitlines() or ["?"]
        if any("No module named 'easyocr'" in ln for ln in err):
            raise HwocrError(f"{py} does not import easyocr: scripts/bootstrap.sh installs it into .venv-easyocr "
                             "(torch 2.14.1, torchvision 0.29.1, easyocr 1.7.2)")
        raise HwocrError(f"EasyOCR could not read with {bundle}: {err[-1]}")
    return out
