#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: the fast tests first, so that a broken basic test fails within
# a minute or two, then the slow ones (marked `slow`: they train, start servers, run EasyOCR or whole flows).
# Arguments go to both pytest runs (`bash scripts/test.sh -x`, `... tests/test_words.py`); with your own -m, one run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

pytest() { .venv/bin/python -m pytest "$@"; }
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
