#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: the fast tests first, so that a broken basic test fails within
# a minute or two, then the slow ones (marked `slow`: they train, start servers, run EasyOCR or whole flows).
# Arguments go to both pytest runs (`bash scripts/test.sh -x`, `... tests/test_words.py`); with your own -m, one run.
set -euo pipefail
cd "$(dirname "$0")/.."
# The venvs are not byte-compiled whole at install (most of torch, MLflow and Prefect no test imports): Python
# compiles each module on its first import and writes it beside, for every later process (measured on 2 cores: a fresh
# .venv installs in 7 s instead of 35).
unset PYTHONDONTWRITEBYTECODE
# .venv-plain: a test runs the MLflow server of a non-dev install.
HWOCR_COMPILE_BYTECODE=0 HWOCR_PLAIN_VENV=1 bash scripts/bootstrap.sh

# Two workers (pytest-xdist) whatever the machine: the slow tests wait on servers and subprocesses, so two overlap
# well even on 2 cores, and more would each start their own servers and session fixtures. A module's tests stay
# on one worker (--dist loadscope), so its fixtures are built once. HWOCR_TEST_WORKERS=0 runs in one process.
workers=${HWOCR_TEST_WORKERS:-2}
pytest() { .venv/bin/python -m pytest $( [ "$workers" != 0 ] && echo "-n $workers --dist loadscope" ) "$@"; }
for arg in "$@"; do
  case $arg in -m | -m?*) pytest "$@"; exit ;; esac
done

# Exit status 5 is "no tests collected": arguments that select only fast (or only slow) tests leave one run empty.
status=0
pytest -m "not slow" "$@" || status=$?
if [ "$status" != 0 ] && [ "$status" != 5 ]; then exit "$status"; fi
fast=$status
status=0
pytest -m slow "$@" || status=$?
if [ "$status" = 5 ] && [ "$fast" = 0 ]; then status=0; fi
exit "$status"
