"""Prefect and MLflow at arm's length: the product code uses their public names only, so that their next releases
cannot break it in ways no one sees coming. No private module, attribute or method of theirs (a name starting with
one underscore), no subclass of one of their classes, no method of theirs replaced."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PRODUCT = ["hwocr", "synth", "models", "tracking", "tasks", "flows"]
THEIRS = ("prefect", "mlflow")
# Their classes made to be subclassed: the protocol Prefect documents for custom lock managers.
EXTENSION_POINTS = {"LockManager"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _theirs(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in THEIRS


def findings(source: str, path: str) -> list[str]:
    tree = ast.parse(source, path)
    bound: set[str] = set()  # local names of their modules, classes and functions
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _theirs(alias.name):
                    bound.add((alias.asname or alias.name).split(".")[0])
                    if any(_private(part) for part in alias.name.split(".")):
                        found.append(f"{path}:{node.lineno}: imports private module {alias.name}")
        elif isinstance(node, ast.ImportFrom) and _theirs(node.module):
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"{path}:{node.lineno}: imports from private module {node.module}")
            for alias in node.names:
                bound.add(alias.asname or alias.name)
                if _private(alias.name):
                    found.append(f"{path}:{node.lineno}: imports private name {node.module}.{alias.name}")

    def root(expr) -> str | None:
        while isinstance(expr, (ast.Attribute, ast.Call, ast.Subscript)):
            expr = expr.func if isinstance(expr, ast.Call) else expr.value
        return expr.id if isinstance(expr, ast.Name) else None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and root(node.value) in bound:
            found.append(f"{path}:{node.lineno}: reads private {ast.unparse(node)}")
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                if root(base) in bound and ast.unparse(base).split(".")[-1] not in EXTENSION_POINTS:
                    found.append(f"{path}:{node.lineno}: class {node.name} subclasses {ast.unparse(base)}")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and root(target.value) in bound:
                    found.append(f"{path}:{node.lineno}: replaces {ast.unparse(target)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr" \
                and node.args and root(node.args[0]) in bound:
            found.append(f"{path}:{node.lineno}: setattr on {ast.unparse(node.args[0])}")
    return found


def test_product_code_uses_public_prefect_and_mlflow_names_only():
    found = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            found += findings(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == []


@pytest.mark.parametrize("planted", [
    "from prefect.server.api.server import SubprocessASGIServer\nSubprocessASGIServer._instances.get(None)",
    "from prefect.runner import Runner\nRunner.start = lambda self: None",
    "from prefect.server.api.server import SubprocessASGIServer\nclass S(SubprocessASGIServer):\n    pass",
    "from prefect._internal.concurrency.services import drain_all",
    "import mlflow\nmlflow.tracking._model_registry.utils",
    "from mlflow.utils.logging_utils import _configure_mlflow_loggers",
    "import prefect.context as c\nsetattr(c, 'GLOBAL_SETTINGS_CONTEXT', None)",
])
def test_a_planted_private_use_is_found(planted):
    assert findings(planted, "planted.py")


def test_public_uses_pass():
    assert findings("from prefect.runner import Runner\nr = Runner(limit=1)\nr.add_deployment(d)\n"
                    "import mlflow\nmlflow.set_tag('a', 'b')\nobj._private = 1\n", "ok.py") == []
