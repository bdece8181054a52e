"""The layers, from the ground up, one folder each: hwocr/ (errors, storage, hashing, layout), synth/ (the renderer
library), models/ (the network, data, loop and EasyOCR's side), tasks/ (the Prefect stages), flows/ (the flows,
config and CLI). pyproject.toml's [tool.importlinter] declares them, with Prefect and MLflow kept out of the
libraries and torch out of hwocr/ and synth/; lint-imports checks that on grimp's import graph, the graph the code
versions in cache keys come from (hwocr/hashing.py). Imports at any depth of a module count, lazy ones too. What
the graph cannot see, a module or folder of a higher layer named in a string (`-m flows.x`, "tasks/"), is looked
for here."""

import ast
import glob
import os
import re
import shutil
import subprocess
import sys
import tomllib

from hwocr import hashing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    PYPROJECT = tomllib.load(f)
LAYERS = next(c["layers"] for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c["type"] == "layers")[::-1]


def lint_imports(root: str) -> subprocess.CompletedProcess:
    """lint-imports on the packages under root, with the contracts of root's pyproject.toml."""
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    # lint-imports puts its working folder first on the path: root's packages are the ones read.
    return subprocess.run([lint, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120)


def ties(root: str) -> list[str]:
    """String literals in a layer's modules that are, whole, a module name or folder path of a higher layer: a
    `-m` target, an import by name, a path joined to a source file. Prose that mentions one is no tie."""
    found = []
    for i, layer in enumerate(LAYERS):
        upper = "|".join(map(re.escape, LAYERS[i + 1:]))
        if not upper:
            continue
        whole = re.compile(rf"(?:-m\s+)?/?(?:{upper})(?:[./][\w./]*)?")
        run = re.compile(rf"(?<!\S)-m\s+(?:{upper})\b")  # a command line in one string
        for path in sorted(glob.glob(os.path.join(root, layer, "**", "*.py"), recursive=True)):
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                        whole.fullmatch(node.value.strip()) or run.search(node.value)):
                    found.append((os.path.relpath(path, root), node.lineno, f"({layer}) names {node.value!r}"))
    return [f"{path}:{line} {what}" for path, line, what in sorted(found)]


def test_the_contracts_hold():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 kept, 0 broken" in proc.stdout


def test_the_contracts_and_the_code_versions_read_the_same_packages():
    assert PYPROJECT["tool"]["importlinter"]["root_packages"] == LAYERS == PYPROJECT["tool"]["setuptools"]["packages"]
    assert sorted(hashing.project_packages()) == sorted(LAYERS)


def test_a_planted_upward_or_forbidden_import_is_reported(tmp_path):
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "__init__.py").write_text("")
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp_path)
    (tmp_path / "tasks" / "stage.py").write_text("X = 1\n")
    (tmp_path / "models" / "net.py").write_text("import os\n\n\ndef f():\n    from tasks import stage\n")
    (tmp_path / "synth" / "draw.py").write_text("def f():\n    import torch\n")
    (tmp_path / "hwocr" / "log.py").write_text("import mlflow.tracking\n")
    (tmp_path / "flows" / "ok.py").write_text("import prefect\nimport torch\nfrom tasks import stage\n")
    proc = lint_imports(str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 kept, 3 broken" in proc.stdout
    for line in ("models.net -> tasks.stage", "synth.draw -> torch", "hwocr.log -> mlflow"):
        assert line in proc.stdout, proc.stdout
    assert "flows.ok" not in proc.stdout


def test_no_lower_layer_names_a_higher_one_in_a_string():
    assert ties(ROOT) == []


def test_a_planted_tie_by_name_or_path_is_found(tmp_path):
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    (tmp_path / "tasks" / "run.py").write_text(
        'import os\nimport sys\n\nCMD = [sys.executable, "-m", "flows.entry"]\n'
        'SOURCE = os.path.join(os.path.dirname(__file__), "..", "flows", "entry.py")\n'
        'SHELL = "python -m  flows.entry "\nFOLDER = "flows/"\n'
        'SAME = "tasks.render"\nPROSE = "see flows/cli.py for the command"\n')
    (tmp_path / "hwocr" / "reach.py").write_text('import importlib\n\nM = importlib.import_module("synth.words")\n')
    assert ties(str(tmp_path)) == [
        "hwocr/reach.py:3 (hwocr) names 'synth.words'",
        "tasks/run.py:4 (tasks) names 'flows.entry'",
        "tasks/run.py:5 (tasks) names 'flows'",
        "tasks/run.py:6 (tasks) names 'python -m  flows.entry '",
        "tasks/run.py:7 (tasks) names 'flows/'",
    ]


def test_no_two_layers_have_a_module_of_one_name():
    """A name says which module it is: `settings` or `evaluate` in two layers would be read as one."""
    seen: dict[str, list[str]] = {}
    for layer in LAYERS:
        for path in glob.glob(os.path.join(ROOT, layer, "*.py")):
            name = os.path.basename(path)
            if name != "__init__.py":
                seen.setdefault(name, []).append(layer)
    assert len(seen) > 40, seen
    assert {name: layers for name, layers in seen.items() if len(layers) > 1} == {}
