#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the embedded default sweep: synthetic tasks, the shipped tiny encoder,
# fine-tuning vs deep prompt tuning, offline, on CPU. Results: MLflow at sqlite:///mlflow.db (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/xtuner sweep run sweeps/demo.yaml "$@"
