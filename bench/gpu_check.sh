#!/usr/bin/env bash
# GPU check on a lent machine (no internet): install the wheels of .whl/ into a private target dir, then run
# bench/bench_gpu.py, writing $OUT/gpu.json and $OUT/gpu.log. Run from the repo root:
#
#     bash bench/gpu_check.sh                                   # on the GPU machine ($OUT is set there)
#     SMOKE=1 PYTHON=.venv/bin/python WHEELS=/tmp/whl311 OUT=/tmp/out bash bench/gpu_check.sh   # local CPU rehearsal
#
# Overrides: PYTHON (default python3), WHEELS (default .whl), SITE (default /tmp/site), OUT (default a temp dir),
# SMOKE=1 (tiny shapes, CPU-sized), BUDGET_S (bench time budget, default 330), SKIP_INSTALL=1 (use what PYTHON has).
set -euo pipefail

PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/site}
OUT=${OUT:-$(mktemp -d /tmp/gpu-check-out.XXXXXX)}
BUDGET_S=${BUDGET_S:-330}
mkdir -p "$OUT"

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  echo "== installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE"
  t0=$(date +%s)
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE:$PWD"
  echo "   done in $(( $(date +%s) - t0 ))s"
else
  export PYTHONPATH="$PWD"
fi

echo "== nvidia-smi -L"
nvidia-smi -L 2>&1 || echo "(no nvidia-smi)"
echo "== $("$PYTHON" --version 2>&1), PYTHONPATH=$PYTHONPATH, free disk in /tmp: $(df -h /tmp | awk 'NR==2 {print $4}')"

XTUNER_CACHE=$(mktemp -d /tmp/xtuner-cache.XXXXXX)
export XTUNER_CACHE
export PYTHONUNBUFFERED=1
args=(--out "$OUT/gpu.json" --budget-s "$BUDGET_S")
[ "${SMOKE:-0}" = 1 ] && args+=(--smoke)

set +e
"$PYTHON" bench/bench_gpu.py "${args[@]}" 2>&1 | tee "$OUT/gpu.log"
rc=${PIPESTATUS[0]}
set -e
rm -rf "$XTUNER_CACHE"
echo "== bench_gpu.py exit $rc; wrote $OUT/gpu.json and $OUT/gpu.log"
exit "$rc"
