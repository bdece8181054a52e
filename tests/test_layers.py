"""The layers, from the ground up: hwocr's ground files (errors, storage, hashing) import no other layer; models/
(the network, data and loop) and the renderer library in tasks/ are plain Python with no Prefect or MLflow; only
tasks/ stages and flows/ use Prefect. Imports at any depth of a module count, lazy ones too."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUND = ["hwocr/errors.py", "hwocr/storage.py", "hwocr/hashing.py"]
RENDERER = ["tasks/effects.py", "tasks/fonts.py", "tasks/font_pool.py", "tasks/words.py", "tasks/render_worker.py"]
# file patterns -> top-level names they must never import
RULES = {
    "ground": (GROUND, {"models", "tasks", "flows", "prefect", "mlflow", "torch"}),
    "models": (["models/"], {"tasks", "flows", "prefect", "mlflow"}),
    "renderer": (RENDERER, {"flows", "prefect", "mlflow", "models", "torch"}),
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
