"""Docker files, checked statically (no Docker engine here): hadolint, dclint (schema and rules), and content."""

import os
import re
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKER = os.path.join(ROOT, "docker")
HADOLINT = os.path.join(os.path.dirname(sys.executable), "hadolint")
DCLINT = os.path.join(ROOT, ".npm-tools", "node_modules", ".bin", "dclint")


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_dockerfile_lints_clean_and_ships_every_package(name):
    path = os.path.join(DOCKER, name)
    lint = subprocess.run([HADOLINT, path], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    text = open(path, encoding="utf-8").read()
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        packages = re.search(r"packages\s*=\s*\[([^\]]*)\]", f.read()).group(1)
    for package in re.findall(r'"([\w.]+)"', packages):
        assert f"COPY {package.split('.')[0]} " in text, f"{name} does not copy the package {package}"
    assert "fonts-alee" in text and "fonts-unfonts-extra" in text
    assert 'ENTRYPOINT ["hwocr"]' in text


def test_compose_file_validates_and_keeps_credentials_out():
    path = os.path.join(DOCKER, "compose.yaml")
    if not os.path.exists(DCLINT):
        pytest.fail(f"{DCLINT} is missing: scripts/bootstrap.sh installs dclint with npm")
    lint = subprocess.run([DCLINT, path], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    compose = yaml.safe_load(open(path, encoding="utf-8"))
    assert set(compose["services"]) == {"minio", "buckets", "prefect-server", "mlflow", "worker"}
    worker = compose["services"]["worker"]
    assert worker["image"] == "hwocr:cuda"
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    for service in compose["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"SECRET|PASSWORD|ACCESS_KEY|USER", key):
                assert str(value).startswith("${"), f"{key} must come from the environment, not the file"
