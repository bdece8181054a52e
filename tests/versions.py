"""The lowest Prefect and MLflow versions pyproject.toml's ranges allow, as pip pins (scripts/bootstrap.sh installs
them into .venv-lowest for tests/test_versions.py). MLflow comes as three distributions released together."""

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOGETHER = {"prefect": ["prefect"], "mlflow": ["mlflow", "mlflow-skinny", "mlflow-tracing"]}


def lowest() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    found = {}
    for dep in deps:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)", dep)
        if m and m.group(1) in TOGETHER:
            found[m.group(1)] = m.group(2)
    missing = set(TOGETHER) - set(found)
    if missing:
        raise SystemExit(f"pyproject.toml: no lower bound for {', '.join(sorted(missing))}")
    return found


def pins() -> list[str]:
    return [f"{dist}=={version}" for name, version in lowest().items() for dist in TOGETHER[name]]


if __name__ == "__main__":
    print(" ".join(pins()))
