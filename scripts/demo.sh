#!/usr/bin/env bash
# Set up (idempotent) and build the quick demo dataset end to end: ephemeral Prefect, local files.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/hwocr data --config configs/quick.yaml "$@"
