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
    # the catalogue's fonts as bootstrap installs them: its Debian packages, then its npm fonts once hwocr is in
    assert "COPY scripts/fonts.sh /usr/local/bin/hwocr-fonts" in text
    apt, install, npm = (text.index(s) for s in ("hwocr-fonts apt", "RUN pip install --no-cache-dir .",
                                                    "hwocr-fonts npm python"))
    assert apt < install < npm
    assert "ARG HWOCR_FONTS=all" in text and "HWOCR_NPM_FONTS=/opt/hwocr/fonts/npm" in text
    assert "apt-get purge -y --auto-remove npm" in text
    assert 'ENTRYPOINT ["hwocr"]' in text


def _packages(name: str) -> set[str]:
    """The packages of one of scripts/fonts.sh's arrays."""
    text = open(os.path.join(ROOT, "scripts", "fonts.sh"), encoding="utf-8").read()
    body = re.search(rf"^{name}=\(([^)]*)\)", text, re.M).group(1)
    return set(body.split())


def test_font_installer_installs_every_debian_package_of_the_catalogue():
    from synth.font_pool import load_catalogue

    debian = {e.package for e in load_catalogue() if e.source == "debian"}
    listed = _packages("BASE_PACKAGES") | _packages("CATALOGUE_PACKAGES")
    assert debian - listed == set(), "catalogue packages scripts/fonts.sh does not install"
    assert {p for p in listed if p.startswith("fonts-")} - debian == {"fonts-dejavu-core"}
    bootstrap = open(os.path.join(ROOT, "scripts", "bootstrap.sh"), encoding="utf-8").read()
    assert "bash scripts/fonts.sh apt" in bootstrap and "bash scripts/fonts.sh npm .venv/bin/python" in bootstrap
    assert "fonts-nanum" not in bootstrap, "bootstrap keeps a second list of font packages"


@pytest.mark.parametrize("args, rc, out", [([], 2, "usage"), (["npm", "/nonexistent/python"], 0, "")])
def test_font_installer_refuses_an_unknown_step_and_skips_npm_for_base_fonts(args, rc, out):
    done = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fonts.sh"), *args], capture_output=True, text=True,
                          env={**os.environ, "HWOCR_FONTS": "base"})
    assert done.returncode == rc, done.stderr
    assert out in done.stderr


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
