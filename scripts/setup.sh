#!/usr/bin/env bash
# Set up xtuner in ./.venv on a fresh machine (idempotent). Installs torch first so that pip does not pull a
# different build: on this CPU-only machine `torch==2.13.0` is the CPU wheel on disk. Override with
# XTUNER_TORCH_SPEC (e.g. XTUNER_TORCH_SPEC="torch" for your CUDA build) or XTUNER_SKIP_TORCH=1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if [ "${XTUNER_SKIP_TORCH:-0}" != "1" ]; then
  echo "[setup] installing ${XTUNER_TORCH_SPEC:-torch==2.13.0}"
  .venv/bin/python -m pip install -q "${XTUNER_TORCH_SPEC:-torch==2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
fi
echo "[setup] installing xtuner and its dependencies"
.venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, transformers, ray, mlflow, xtuner; print('[setup] ok: xtuner', xtuner.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, '| ray', ray.__version__, '| mlflow', mlflow.__version__)"
