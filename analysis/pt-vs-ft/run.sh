#!/usr/bin/env bash
# Fine-tuning vs deep prompt tuning, language by language, on the embedded default (README.md). From the
# repository root:
#   bash analysis/pt-vs-ft/run.sh            # the sweep (sweep.yaml), then `xtuner report` into results/
#   bash analysis/pt-vs-ft/run.sh --report   # only the report, from this folder's MLflow database
# MLflow (mlflow.db, mlartifacts/) and Tune's storage (xtuner_results/) stay in this folder, untracked by git.
set -euo pipefail
cd "$(dirname "$0")"
XT=../../.venv/bin/xtuner
export XTUNER_NUM_THREADS=${XTUNER_NUM_THREADS:-1}  # one thread per trial: 2 trials share 2 cores
mkdir -p results
if [ "${1:-}" != "--report" ]; then
  start=$(date +%s)
  "$XT" sweep run sweep.yaml --overwrite --quiet
  echo "sweep pt-vs-ft: $(( $(date +%s) - start )) s wall; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" \
    | tee results/wall_time.txt
  "$XT" sweep status pt-vs-ft --storage xtuner_results > results/sweep_status.txt
fi
rm -rf results/report
"$XT" report pt-vs-ft --tracking-uri sqlite:///mlflow.db --out results/report --format md,csv,json,html \
  | tee results/report_terminal.txt
