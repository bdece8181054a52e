#!/usr/bin/env bash
# Set up (idempotent) and run the test suite: the default suite, then the slow one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m pytest -m "not slow" "$@"
status=0
.venv/bin/python -m pytest -m slow "$@" || status=$?
# pytest exits 5 when no test carries the mark.
[ "$status" = 0 ] || [ "$status" = 5 ]
