"""The layers, from the ground up, one folder each: hwocr/ (errors, storage, hashing, layout) imports no other
layer; synth/ (the renderer library) and models/ (the network, data, loop and EasyOCR's side) are plain Python with
no Prefect or MLflow, and synth/ needs no torch; tasks/ (the Prefect stages) never imports flows/ (the flows, config,
CLI and entry points). Imports at any depth of a module count, lazy ones too."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# folders -> top-level names their modules must never import
RULES = {
    "ground": (["hwocr/"], {"synth", "models", "tasks", "flows", "prefect", "mlflow", "torch"}),
    "renderer": (["synth/"], {"models", "tasks", "flows", "prefect", "mlflow", "torch"}),
    "models": (["models/"], {"tasks", "flows", "prefect", "mlflow"}),
    "stages": (["tasks/"], {"flows"}),
}


def imported(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def violations(root: str, rules: dict) -> list[str]:
    found = []
    for layer, (patterns, banned) in rules.items():
        files = []
        for pattern in patterns:
            if pattern.endswith("/"):
                files += [os.path.join(pattern, f) for f in sorted(os.listdir(os.path.join(root, pattern)))
                          if f.endswith(".py")]
            else:
                files.append(pattern)
        for rel in files:
            for name in sorted(imported(os.path.join(root, rel)) & banned):
                found.append(f"{rel} ({layer}) imports {name}")
    return found


def test_no_layer_imports_upward():
    assert violations(ROOT, RULES) == []


def test_a_planted_upward_import_is_found(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text("import torch\n\ndef f():\n    from prefect import task\n")
    (tmp_path / "models" / "ok.py").write_text("from models import net\n")
    assert violations(str(tmp_path), {"models": (["models/"], RULES["models"][1])}) == [
        "models/net.py (models) imports prefect"]
