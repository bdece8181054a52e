#!/usr/bin/env bash
# Set up (idempotent), then the whole pipeline on the quick preset: data, fine-tune, evaluation, MLflow run.
# Ephemeral Prefect, a local MLflow store (sqlite:///mlflow.db), local files in ./hwocr-out.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/hwocr run --config configs/quick.yaml "$@"
