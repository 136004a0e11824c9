"""Does a stopped tracking server slow the trials down? A real sweep (4 tiny fine-tuning trials of 2 epochs, one at a
time, the built-in encoder) is run by a CLI driver against its own ``mlflow server``, twice: with the server
healthy, and with the server stopped (SIGSTOP) from the moment the first trial's MLflow run exists until the sweep
has ended or `--stall-limit` seconds have passed (then SIGCONT).

Per run: wall time, the time at which each trial was recorded ``done`` in the sweep state file (polled every
0.2 s, relative to the driver's start), how many trials finished while the server was stopped, and whether MLflow
ended complete (a stalled run of the new driver ends with what MLflow lacks named; `xtuner sweep sync` writes it). ``--python`` picks the checkout whose xtuner runs
the driver (e.g. /work/main/.venv/bin/python for the code before the writer thread), so both can be compared on
the same machine in one go.

    .venv/bin/python bench/bench_tracker.py --python .venv/bin/python --python /work/main/.venv/bin/python \\
        --out bench/results/tracker.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import start_mlflow_server, stop_mlflow_server  # noqa: E402

SPEC = {"name": "bench", "model": "builtin:tiny-xlmr", "tasks": ["synth-xnli"], "epochs": 2, "max_concurrent": 1,
        "methods": {"finetune": {"lr": [1.0e-3, 2.0e-3, 3.0e-3, 5.0e-3]}},
        "trial": {"max_train_examples": 256, "max_eval_examples": 32, "max_seq_length": 32, "batch_size": 16,
                  "eval_batch_size": 32, "languages": ["en", "s3"]}}  # fmt: skip


def state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_once(python: str, stall: bool, limit: float, work: Path) -> dict:
    import yaml

    python = str(Path(python).absolute())
    (work / "server").mkdir(parents=True)
    proc, uri = start_mlflow_server(work / "server")
    spec = dict(SPEC, tracking={"uri": uri, "experiment": "bench"}, storage=str(work / "results"))
    (work / "spec.yaml").write_text(yaml.safe_dump(spec))
    state_file = work / "results" / "bench" / "xtuner_sweep.json"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["XTUNER_HOME"] = str(work / "home")
    t0 = time.time()
    log = open(work / "driver.log", "wb")  # noqa: SIM115
    stopped_at = resumed_at = None
    driver = None
    done_at: dict[str, float] = {}
    try:
        driver = subprocess.Popen([python, "-m", "xtuner", "sweep", "run", str(work / "spec.yaml")], cwd=work,
                                  env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        while driver.poll() is None:
            st = state(state_file)
            trials = st.get("trials", {})
            for tid, rec in trials.items():
                if rec.get("state") == "done" and tid not in done_at:
                    done_at[tid] = time.time()
            if stall and stopped_at is None and any(r.get("run_id") for r in trials.values()):
                os.killpg(proc.pid, signal.SIGSTOP)
                stopped_at = time.time()
            if stopped_at and resumed_at is None and time.time() - stopped_at > limit:
                os.killpg(proc.pid, signal.SIGCONT)
                resumed_at = time.time()
            time.sleep(0.2)
        if stopped_at and resumed_at is None:
            resumed_at = time.time()
            os.killpg(proc.pid, signal.SIGCONT)
        wall = time.time() - t0
        st = state(state_file)
        trials = st.get("trials", {})
        for tid, rec in trials.items():
            if rec.get("state") == "done" and tid not in done_at:
                done_at[tid] = time.time()
        from mlflow.tracking import MlflowClient

        exp = MlflowClient(uri).get_experiment_by_name("bench")
        runs = MlflowClient(uri).search_runs([exp.experiment_id], max_results=50) if exp else []
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        log.close()
        stop_mlflow_server(proc)
    ends = sorted(done_at.values())
    done_while_stopped = [t for t in ends if stopped_at and stopped_at <= t <= (resumed_at or 1e18)]
    return {
        "python": python, "stalled": stall, "rc": driver.returncode, "wall_s": round(wall, 1),
        "stopped_after_s": round(stopped_at - t0, 1) if stopped_at else None,
        "stopped_s": round((resumed_at or 0) - (stopped_at or 0), 1) if stopped_at else 0,
        "done_at_s": [round(t - t0, 1) for t in ends],
        "trials_done": sum(r.get("state") == "done" for r in trials.values()),
        "done_while_stopped": len(done_while_stopped),
        "mlflow_runs": len(runs), "mlflow_finished": sum(r.info.status == "FINISHED" for r in runs),
        "load": os.getloadavg()[0],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", action="append", required=True, help="interpreter of the xtuner to run (repeat)")
    ap.add_argument("--stall-limit", type=float, default=240.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results = []
    for python in args.python:
        for stall in (False, True):
            with tempfile.TemporaryDirectory(prefix="xtuner-bench-tracker-") as tmp:
                res = run_once(python, stall, args.stall_limit, Path(tmp))
            print(json.dumps(res), flush=True)
            results.append(res)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
