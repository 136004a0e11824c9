#!/usr/bin/env bash
# Representation alignment after tuning on English: fine-tuning vs deep prompt tuning vs the untuned encoder
# (README.md). From the repository root:
#   bash analysis/representations/run.sh            # the sweep (sweep.yaml), then the analyses into results/
#   bash analysis/representations/run.sh --analyze  # only the analyses, from this folder's MLflow database
#   bash analysis/representations/run.sh --pilot    # the en-dev pilot that fixed the learning rates (pilot.yaml)
# MLflow (mlflow.db, mlartifacts/) and Tune's storage (xtuner_results/, with the kept weights) stay in this
# folder, untracked by git.
set -euo pipefail
cd "$(dirname "$0")"
XT=../../.venv/bin/xtuner
export XTUNER_NUM_THREADS=${XTUNER_NUM_THREADS:-1}  # one thread per trial: 2 trials share 2 cores
mkdir -p results
if [ "${1:-}" = "--pilot" ]; then
  "$XT" sweep run pilot.yaml --overwrite --quiet
  "$XT" sweep status repr-pilot --storage xtuner_results | tee results/pilot_status.txt
  exit 0
fi
if [ "${1:-}" != "--analyze" ]; then
  start=$(date +%s)
  "$XT" sweep run sweep.yaml --overwrite --quiet
  echo "sweep repr: $(( $(date +%s) - start )) s wall; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" \
    | tee results/wall_time.txt
  "$XT" sweep status repr --storage xtuner_results > results/sweep_status.txt
fi
start=$(date +%s)
for task in synth-pawsx synth-xnli; do
  "$XT" analyze representations repr --task "$task" --rows 2000 --tracking-uri sqlite:///mlflow.db \
    --out "results/$task" > /dev/null
done
echo "analyses: $(( $(date +%s) - start )) s wall; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" \
  | tee -a results/wall_time.txt
../../.venv/bin/python accuracy.py > results/accuracy.md  # test accuracy beside the end-of-trial alignment
