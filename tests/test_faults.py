"""Injected failures on the session's real Ray and real `mlflow server` (conftest.py).

A trial's worker process is killed (SIGKILL, from outside, as the OOM killer or a preempted container would) while
it trains: Tune retries it (``max_failures: 1``) from its last reported checkpoint, it finishes with the epochs it
had left only, its MLflow child run is the same one (no duplicate, no lost run) and its dev curve has every epoch
once. The worker's pid comes from the sweep state (each dev result carries Tune's ``pid``).

The other failure cases of issue 6 live beside the code they exercise: a removed node in test_multinode.py, the
killed driver and a NaN trial in test_sweep.py, the tracking server going away in test_sweep_sync.py.
"""

from __future__ import annotations

import os

import pytest
from faults import WorkerKiller
from mlflow.tracking import MlflowClient
from rich.console import Console

from xtuner.sweep.report import status_table
from xtuner.sweep.runner import load_plan, run_sweep
from xtuner.sweep.state import STATE_FILE

pytestmark = pytest.mark.slow  # about 40 s on 2 loaded cores

LRS = [1.0e-3, 3.0e-3]
EPOCHS = 3


def test_killed_worker_is_retried_from_its_checkpoint(ray_cluster, mlflow_server, tiny_model, tmp_path) -> None:
    spec = {
        "name": "killed-worker",
        "model": tiny_model,
        "tasks": ["synth-xnli"],
        "methods": {"finetune": {"lr": LRS}},
        "epochs": EPOCHS,
        "max_concurrent": 2,
        "max_failures": 1,
        "trial": {"max_train_examples": 768, "max_eval_examples": 32, "max_seq_length": 32, "batch_size": 16,
                  "eval_batch_size": 32, "languages": ["en", "s3"]},  # epochs of a few seconds
        "tracking": {"uri": mlflow_server, "experiment": "test-killed-worker"},
        "storage": str(tmp_path / "results"),
    }  # fmt: skip
    killer = WorkerKiller(str(tmp_path / "results" / "killed-worker" / STATE_FILE))
    killer.start()
    state = run_sweep(load_plan(spec), quiet=True)
    killer.join(timeout=5)
    assert killer.problem is None and killer.victim, killer.problem
    victim = killer.victim
    assert "ray::" in victim["cmdline"]  # a Ray worker process, not the driver

    assert state.finished and [r.state for r in state.trials.values()] == ["done"] * len(LRS)
    rec = state.trials[victim["trial_id"]]
    assert rec.failures == 1 and rec.started == 2
    assert rec.pid != victim["pid"]  # finished in a new worker process
    assert [e for e, _ in rec.dev_curve] == [1.0, 2.0, 3.0]  # every epoch once
    # retried from its checkpoint: at most the epoch it was in when killed and the ones after it were trained again
    assert victim["reports"] == 1 and rec.reports <= victim["reports"] + EPOCHS - 1
    # the dead worker's temp output folder was removed by the next trial that started on the node
    assert len(killer.temp_dirs) == 1 and not os.path.exists(killer.temp_dirs[0])
    # retention: a finished trial's checkpoints are deleted (resume does not need them)
    sweep_dir = tmp_path / "results" / "killed-worker"
    assert len(list(sweep_dir.glob("trial_*"))) == len(LRS) and not list(sweep_dir.glob("trial_*/checkpoint_*"))
    others = [r for tid, r in state.trials.items() if tid != victim["trial_id"]]
    assert all(r.failures == 0 and r.started == 1 for r in others)

    client = MlflowClient(mlflow_server)
    exp = client.get_run(state.parent_run_id).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{state.parent_run_id}'")
    assert sorted(r.info.run_id for r in runs) == sorted(r.run_id for r in state.trials.values())  # no duplicate
    assert rec.run_id == victim["run_id"]  # the same child run continued
    run = client.get_run(rec.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["xtuner.failures"] == "1"
    assert run.data.tags["xtuner.state"] == "done" and "xtuner.error" not in run.data.tags
    assert [m.step for m in client.get_metric_history(rec.run_id, "dev/en/accuracy")] == [1, 2, 3]
    assert {"test/en/accuracy", "test/s3/accuracy"} <= set(run.data.metrics)

    table = Console(width=200, record=True)  # `xtuner sweep status` shows the retry
    table.print(status_table(state))
    row = next(line for line in table.export_text().splitlines() if victim["trial_id"] in line)
    assert "done (1 retry)" in row
