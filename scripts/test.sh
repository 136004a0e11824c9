#!/usr/bin/env bash
# Set up (scripts/setup.sh), then lint and run the whole test suite. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "[test] ruff"
.venv/bin/ruff check .
echo "[test] pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
