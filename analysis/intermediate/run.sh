#!/usr/bin/env bash
# Intermediate-task training (none / en / multi, with and without translation noise) before fine-tuning and deep
# prompt tuning on the embedded default (README.md). From the repository root:
#   bash analysis/intermediate/run.sh            # both sweeps (sweep.yaml, noise.yaml), then xtuner report
#   bash analysis/intermediate/run.sh --report   # only the report, from this folder's MLflow database
# MLflow (mlflow.db, mlartifacts/) and Tune's storage (xtuner_results/, with the shared stage-1 encoders under
# xtuner_results/_intermediate/) stay in this folder, untracked by git.
set -euo pipefail
cd "$(dirname "$0")"
XT=../../.venv/bin/xtuner
export XTUNER_NUM_THREADS=${XTUNER_NUM_THREADS:-1}  # one thread per trial: 2 trials share 2 cores
mkdir -p results
if [ "${1:-}" != "--report" ]; then
  rm -rf mlflow.db mlartifacts xtuner_results  # a fresh start: every stage 1 is trained (and timed) again
  start=$(date +%s)
  "$XT" sweep run sweep.yaml --quiet
  mid=$(date +%s)
  "$XT" sweep run noise.yaml --quiet
  end=$(date +%s)
  echo "sweep inter: $(( mid - start )) s wall, sweep inter-noise: $(( end - mid )) s wall; load average at the" \
       "end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee results/wall_time.txt
  "$XT" sweep status inter --storage xtuner_results > results/sweep_status.txt
  "$XT" sweep status inter-noise --storage xtuner_results >> results/sweep_status.txt
fi
"$XT" report inter inter-noise --tracking-uri sqlite:///mlflow.db --out results/report --format md,csv,json \
  --no-log > results/report_terminal.txt
