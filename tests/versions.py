"""Both ends of pyproject.toml's Prefect and MLflow ranges, as pip requirements (scripts/bootstrap.sh installs each
end into an overlay, .venv-lowest and .venv-highest, for tests/test_versions.py).

MLflow comes as three distributions released together: mlflow, mlflow-skinny and mlflow-tracing. mlflow-tracing's
files are a subset of mlflow-skinny's, so the highest end installs mlflow and mlflow-skinny only: pip's index may
lack the newest mlflow-tracing (this machine's had mlflow 3.18.0 without mlflow-tracing 3.18.0), and the overlay's
mlflow package then holds the newest release's code throughout."""

import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOGETHER = {"prefect": ["prefect"], "mlflow": ["mlflow", "mlflow-skinny", "mlflow-tracing"]}
HIGHEST = {"prefect": ["prefect"], "mlflow": ["mlflow", "mlflow-skinny"]}


def ranges() -> dict[str, str]:
    """{name: specifier} for Prefect and MLflow, as pyproject.toml gives them."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    found = {}
    for dep in deps:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*(>=.*)$", dep.split("#")[0].strip().strip('",'))
        if m and m.group(1) in TOGETHER:
            found[m.group(1)] = m.group(2).replace(" ", "")
    missing = set(TOGETHER) - set(found)
    if missing or any(not re.search(r"<[0-9]", spec) for spec in found.values()):
        raise SystemExit(f"pyproject.toml: Prefect and MLflow need a range (>=low,<high), found {found}")
    return found


def lowest() -> dict[str, str]:
    return {name: re.match(r">=([0-9][0-9A-Za-z.]*)", spec).group(1) for name, spec in ranges().items()}


def requirements(end: str) -> list[str]:
    if end == "lowest":
        return [f"{dist}=={version}" for name, version in lowest().items() for dist in TOGETHER[name]]
    return [f"{dist}{spec}" for name, spec in ranges().items() for dist in HIGHEST[name]]


if __name__ == "__main__":
    print(" ".join(requirements(sys.argv[1] if len(sys.argv) > 1 else "lowest")))
