"""`xtuner sweep sync` end to end: a real tracking server dies in the middle of a tiny sweep (2 trials, the session's
Ray, the tiny encoder); the sweep still finishes with every result in its state file, which names what MLflow
lacks; `sync` against the session's live `mlflow server` then builds exactly one parent run and one child run per
trial (params, per-epoch dev curve, per-language test metrics and CSV, tags, status), and a second sync (through
the CLI) writes nothing.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from conftest import per_language_csv, start_mlflow_server
from mlflow.tracking import MlflowClient

from xtuner.cli import main as cli_main
from xtuner.errors import XtunerError
from xtuner.sweep.runner import load_plan, run_sweep
from xtuner.sweep.state import STATE_FILE, SweepState
from xtuner.sweep.sync import sync_sweep

pytestmark = pytest.mark.slow  # a real sweep of 2 tiny trials and a second mlflow server

TINY = {"max_train_examples": 64, "max_eval_examples": 32, "max_seq_length": 32, "batch_size": 16,
        "eval_batch_size": 32, "languages": ["en", "s3"]}  # fmt: skip


def snapshot(client: MlflowClient, parent_id: str) -> dict:
    """Everything sync could add: the runs, their params, tags, metric histories, artifacts, status."""
    exp = client.get_run(parent_id).info.experiment_id
    out = {}
    for run in client.search_runs([exp], max_results=100):
        rid = run.info.run_id
        hist = {
            k: sorted((h.step, h.value) for h in client.get_metric_history(rid, k)) for k in run.data.metrics
        }
        arts = sorted(f.path for f in client.list_artifacts(rid))
        out[rid] = (run.info.status, dict(run.data.params), dict(run.data.tags), hist, arts)
    return out


def test_sync_backfills_mlflow_after_the_server_died_mid_sweep(
    ray_cluster, mlflow_server, tiny_model, tmp_path, capsys
) -> None:
    # no MLFLOW_HTTP_REQUEST_* settings here: the driver's writer thread uses short timeouts itself, and Tune's loop
    # never waits for it (xtuner.sweep.tracker)
    (tmp_path / "dying").mkdir()
    proc, dying_uri = start_mlflow_server(tmp_path / "dying")
    raw = {"name": "flaky", "model": tiny_model, "tasks": ["synth-xnli"],
           "methods": {"finetune": {"lr": [1.0e-3, 3.0e-3]}}, "epochs": 2, "max_concurrent": 1,
           "trial": dict(TINY), "tracking": {"uri": dying_uri, "experiment": "test-flaky"},
           "storage": str(tmp_path / "results")}  # fmt: skip
    state_file = tmp_path / "results" / "flaky" / STATE_FILE
    killed = threading.Event()

    def kill_when_first_child_exists() -> None:  # the server dies once the first trial's run was created
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            try:
                st = SweepState.load(state_file) if state_file.exists() else None
            except XtunerError:
                st = None  # the state file is replaced atomically, but be tolerant
            if st and any(r.run_id for r in st.trials.values()):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                killed.set()
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=kill_when_first_child_exists, daemon=True)
    watcher.start()
    try:
        state = run_sweep(load_plan(raw), quiet=True)
    finally:
        watcher.join(timeout=5)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed.is_set()
    err = capsys.readouterr().err
    assert err.count("is slow or unreachable") == 1, err  # one warning, then the trials went on
    assert "still lacks 2 finished trials and the sweep's parent run" in err and "xtuner sweep sync" in err
    assert state.finished and [r.state for r in state.trials.values()] == ["done", "done"]
    saved = SweepState.load(state_file)
    assert saved.tracking_pending == [*sorted(saved.trials), "parent"]  # nothing finished reached MLflow
    assert all(len(r.dev_curve) == 2 and r.final for r in saved.trials.values())

    report = sync_sweep("flaky", storage=str(tmp_path / "results"), tracking_uri=mlflow_server)
    assert sorted(report.runs_created) == sorted(["parent", *saved.trials])  # old run ids: the dead server's
    synced = SweepState.load(state_file)
    assert synced.tracking_uri == mlflow_server and synced.tracking_pending == []
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("test-flaky")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == synced.parent_run_id]
    assert [p.info.run_id for p in parents] == [synced.parent_run_id] and len(runs) == 3 and len(kids) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["xtuner.trials.done"] == "2"
    assert {"best/synth-xnli/finetune/dev_en", "best/synth-xnli/finetune/gap"} <= set(parent.data.metrics)
    assert {"sweep_spec.json", "best_configs.json", "summary.md"} <= {
        f.path for f in client.list_artifacts(parent.info.run_id)
    }
    for run in kids:
        rec = synced.trials[run.data.tags["xtuner.trial_id"]]
        assert run.info.run_id == rec.run_id and run.info.status == "FINISHED"
        assert run.data.tags["xtuner.state"] == "done" and float(run.data.params["lr"]) == rec.params["lr"]
        m = run.data.metrics
        for lang in ("en", "s3", "avg", "gap"):
            assert m[f"test/{lang}/accuracy"] == round(rec.final[f"test/{lang}/accuracy"], 4)  # as MLflow shows it
        curve = client.get_metric_history(run.info.run_id, "dev/en/accuracy")
        assert sorted((h.step, h.value) for h in curve) == [
            (int(e), pytest.approx(v, abs=1e-4)) for e, v in rec.dev_curve
        ]
        rows = per_language_csv(client, run.info.run_id, tmp_path)
        assert rows[0] == "lang,accuracy" and [r.split(",")[0] for r in rows[1:]] == [
            "en",
            "s3",
            "avg",
            "others",
            "gap",
        ]

    before = snapshot(client, synced.parent_run_id)
    assert len(before) == 3
    capsys.readouterr()
    assert (
        cli_main(["sweep", "sync", str(tmp_path / "results" / "flaky"), "--tracking-uri", mlflow_server]) == 0
    )
    assert "nothing written" in capsys.readouterr().out
    assert snapshot(client, synced.parent_run_id) == before  # the second sync changed nothing
    assert SweepState.load(state_file).parent_run_id == synced.parent_run_id
