"""Sweeps end to end on the real components: the session's local Ray, a real `mlflow server` on 127.0.0.1 (both in
conftest.py), the built-in tiny encoder and the synthetic tasks, with tiny trial sizes.

- a grid sweep: the MLflow run tree (parent + one child per trial with params, the per-epoch dev curve, per-language
  test metrics, avg and gap, the per-language CSV), method params only on their method, a NaN trial that ends as
  `nonfinite` while the others finish, `xtuner sweep status`;
- a sweep whose every trial fails (NaN loss) exits 1 with one error line, through the CLI;
- the Optuna path (per-group define-by-run space, sqlite tracking);
- ASHA stopping a trial whose learning rate is useless (tagged pruned, its dev curve kept);
- resume: while the CLI driver runs, a second `run`, a `resume` and a `sync` of the sweep are refused with one
  error naming it (the driver lock); the driver is killed (SIGKILL) after a trial finished; its folder verifies
  against the user's key (every pickle signed as Tune wrote it), a replaced ``tuner.pkl`` is refused before it is
  unpickled, another user's key is refused unless they trust the folder; `xtuner sweep resume` takes over the dead
  driver's lock and finishes the rest with the same parent and child runs, no duplicate child runs and no re-run
  of finished trials.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import per_language_csv
from export_checks import check_exports, check_progress_lines
from faults import one_done_one_started, wait_for_state
from mlflow.tracking import MlflowClient

from xtuner.cli import main as cli_main
from xtuner.errors import XtunerError
from xtuner.sweep.runner import load_plan, resume_sweep, run_sweep
from xtuner.sweep.signing import verify
from xtuner.sweep.state import STATE_FILE, SweepState

pytestmark = pytest.mark.slow  # about 2 minutes on 2 loaded cores (real Ray trials)

TINY = {"max_train_examples": 64, "max_eval_examples": 32, "max_seq_length": 32, "batch_size": 16,
        "eval_batch_size": 32, "languages": ["en", "s3"]}  # fmt: skip


def spec(name: str, tmp: Path, tracking: str, **over) -> dict:
    base = {
        "name": name,
        "model": over.pop("model"),
        "tasks": ["synth-xnli"],
        "methods": {"finetune": {"lr": [1.0e-3]}},
        "epochs": 1,
        "max_concurrent": 2,
        "trial": dict(TINY),
        "tracking": {"uri": tracking, "experiment": f"test-{name}"},
        "storage": str(tmp / "results"),
    }
    base.update(over)
    return base


def children(client: MlflowClient, parent_id: str) -> list:
    exp = client.get_run(parent_id).info.experiment_id
    return client.search_runs(
        [exp], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=200
    )


def test_grid_sweep_builds_the_mlflow_run_tree(
    ray_cluster, mlflow_server, tiny_model, tmp_path, capsys
) -> None:
    raw = spec("grid", tmp_path, mlflow_server, model=tiny_model,
               methods={"finetune": {"lr": [1.0e-3, 1.0e30]}, "deep_prompt": {"lr": [1.0e-2], "psl": [4, 8]}})  # fmt: skip
    state = run_sweep(load_plan(raw))
    assert state.finished
    recs = {(r.method, r.params["lr"], r.params.get("psl")): r for r in state.trials.values()}
    assert set(recs) == {("finetune", 1e-3, None), ("finetune", 1e30, None), ("deep_prompt", 1e-2, 4),
                         ("deep_prompt", 1e-2, 8)}  # fmt: skip
    assert recs["finetune", 1e30, None].state == "nonfinite"  # NaN loss: ended cleanly, the rest went on
    assert "loss became" in (recs["finetune", 1e30, None].error or "")
    assert [r.state for k, r in recs.items() if k[1] != 1e30] == ["done"] * 3

    client = MlflowClient(mlflow_server)
    parent = client.get_run(state.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["xtuner.sweep"] == "grid"
    best = json.loads(
        Path(client.download_artifacts(state.parent_run_id, "best_configs.json", str(tmp_path))).read_text()
    )
    assert {(b["task"], b["method"]) for b in best} == {
        ("synth-xnli", "finetune"),
        ("synth-xnli", "deep_prompt"),
    }
    runs = children(client, state.parent_run_id)
    assert len(runs) == 4 and len({r.data.tags["xtuner.trial_id"] for r in runs}) == 4
    for run in runs:
        rec = state.trials[run.data.tags["xtuner.trial_id"]]
        assert run.info.run_id == rec.run_id
        p = run.data.params
        assert p["task"] == "synth-xnli" and p["model"] == tiny_model and p["seed"] == "1"
        assert p["method"] == rec.method and float(p["lr"]) == rec.params["lr"]
        assert ("psl" in p) == (rec.method == "deep_prompt")
        assert p["languages"] == '["en", "s3"]'
        if rec.state == "nonfinite":
            assert run.info.status == "FAILED" and run.data.tags["xtuner.state"] == "nonfinite"
            continue
        m = run.data.metrics
        assert run.info.status == "FINISHED" and run.data.tags["xtuner.state"] == "done"
        assert {"test/en/accuracy", "test/s3/accuracy", "test/avg/accuracy", "test/gap/accuracy"} <= set(m)
        # MLflow holds scores rounded to 4 decimals (xtuner.sweep.run_meta.display_value)
        assert m["test/avg/accuracy"] == pytest.approx((m["test/en/accuracy"] + m["test/s3/accuracy"]) / 2, abs=2e-4)
        assert m["test/gap/accuracy"] == pytest.approx(m["test/en/accuracy"] - m["test/s3/accuracy"], abs=2e-4)
        curve = client.get_metric_history(run.info.run_id, "dev/en/accuracy")
        assert [h.step for h in curve] == [1]
        assert m["best/dev/en/accuracy"] == pytest.approx(curve[0].value)
        rows = per_language_csv(client, run.info.run_id, tmp_path)
        assert rows[0] == "lang,accuracy" and [r.split(",")[0] for r in rows[1:]] == [
            "en",
            "s3",
            "avg",
            "others",
            "gap",
        ]
        assert float(rows[1].split(",")[1]) == pytest.approx(m["test/en/accuracy"], abs=1e-3)

    check_progress_lines(capsys.readouterr().out, state)  # a line per dev evaluation, within 100 columns
    assert cli_main(["sweep", "status", "grid", "--storage", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "3 done" in out and "1 nonfinite" in out and "synth-xnli (accuracy" in out
    check_exports(tmp_path / "results", "grid", state, capsys)  # status --json, list, results(), Ray's analysis


def test_optuna_search_with_sqlite_tracking(ray_cluster, tiny_model, tmp_path) -> None:
    db = tmp_path / "mlflow.db"
    raw = spec("optuna", tmp_path, f"sqlite:///{db}", model=tiny_model, tasks=["synth-udpos"], search="optuna",
               num_samples=2, methods={"deep_prompt": {"lr": {"loguniform": [1.0e-3, 3.0e-2]}, "psl": [4, 8]}})  # fmt: skip
    state = run_sweep(load_plan(raw))
    assert state.finished and [r.state for r in state.trials.values()] == ["done", "done"]
    lrs = [r.params["lr"] for r in state.trials.values()]
    assert all(1e-3 <= lr <= 3e-2 for lr in lrs) and lrs[0] != lrs[1]
    assert all(r.params["psl"] in (4, 8) and "test/s3/f1" in r.final for r in state.trials.values())
    client = MlflowClient(f"sqlite:///{db}")
    runs = children(client, state.parent_run_id)
    assert sorted(float(r.data.params["lr"]) for r in runs) == sorted(lrs)
    assert all("test/gap/f1" in r.data.metrics for r in runs)


def test_asha_stops_a_useless_learning_rate(ray_cluster, mlflow_server, tiny_model, tmp_path) -> None:
    # one worker; the (seeded) run order puts the useful lr first, so it sets the epoch-1 rung's cutoff; the useless
    # one (1e-8: f1 stays 0) is below it and stopped there, before its second epoch and its test evaluation
    raw = spec("asha", tmp_path, mlflow_server, model=tiny_model, tasks=["synth-udpos"], epochs=2, max_concurrent=1,
               methods={"finetune": {"lr": [1.0e-3, 1.0e-8]}}, scheduler={"type": "asha", "grace_period": 1})  # fmt: skip
    seed = next(s for s in range(50) if load_plan(raw | {"search_seed": s}).run_order()[0][1]["lr"] == 1.0e-3)
    state = run_sweep(load_plan(raw | {"search_seed": seed}))
    by_lr = {r.params["lr"]: r for r in state.trials.values()}
    assert by_lr[1e-3].state == "done" and [e for e, _ in by_lr[1e-3].dev_curve] == [1.0, 2.0]
    pruned = by_lr[1e-8]
    assert pruned.state == "pruned" and [e for e, _ in pruned.dev_curve] == [1.0] and not pruned.final
    client = MlflowClient(mlflow_server)
    run = client.get_run(pruned.run_id)
    assert run.data.tags["xtuner.state"] == "pruned" and run.data.tags["xtuner.pruned_at_epoch"] == "1"
    assert [h.step for h in client.get_metric_history(pruned.run_id, "dev/en/f1")] == [1]
    assert not any(k.startswith("test/") for k in run.data.metrics)


def test_resume_after_killing_the_driver(ray_cluster, mlflow_server, tiny_model, tmp_path, monkeypatch,
                                        capsys) -> None:  # fmt: skip
    lrs = [1.0e-3, 2.0e-3, 3.0e-3, 5.0e-3]
    raw = spec("resume", tmp_path, mlflow_server, model=tiny_model, epochs=3, max_concurrent=1,
               methods={"finetune": {"lr": lrs}})  # fmt: skip
    raw["trial"]["max_train_examples"] = 512  # epochs of a few seconds: time to kill the driver mid-trial
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(raw))
    state_file = tmp_path / "results" / "resume" / STATE_FILE
    # Tune saves its experiment state (trials, their checkpoints) every ~10 s by default; every 0.5 s here, so the
    # interrupted trial's epoch-1 checkpoint is known when the driver dies
    env = dict(os.environ, RAY_ADDRESS=ray_cluster, PYTHONUNBUFFERED="1", TUNE_GLOBAL_CHECKPOINT_S="0.5")
    log = open(tmp_path / "driver.log", "wb")  # noqa: SIM115
    driver = subprocess.Popen([sys.executable, "-m", "xtuner", "sweep", "run", str(path)], cwd=tmp_path, env=env,
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    sweep_dir = str(tmp_path / "results" / "resume")
    try:
        # a second driver on the running sweep: `run` and `resume` (and `sync`) are refused, naming the holder
        assert wait_for_state(str(state_file), lambda s: s.trials, timeout=240, alive=lambda: driver.poll() is None)
        others = {name: subprocess.Popen([sys.executable, "-m", "xtuner", "sweep", *argv], cwd=tmp_path, env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for name, argv in {"run": ["run", str(path)], "resume": ["resume", sweep_dir],
                                     "sync": ["sync", sweep_dir]}.items()}  # fmt: skip
        holder = f"sweep run (pid {driver.pid} on host {socket.gethostname()}, started "
        for name, other in others.items():
            _, err = other.communicate(timeout=120)
            assert other.returncode == 2 and err.count("error: ") == 1 and "Traceback" not in err, (name, err)
            assert f"in use by {holder}" in err and ".xtuner_driver.lock" in err, (name, err)
        # kill when a trial is done and the next one is past its first epoch
        if wait_for_state(str(state_file), one_done_one_started, timeout=240, period=0.2,
                          alive=lambda: driver.poll() is None):  # fmt: skip
            time.sleep(1.0)
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()
        assert f"connecting to Ray at {ray_cluster} ..." in (tmp_path / "driver.log").read_text()  # a line while Ray starts
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    before = SweepState.load(state_file)
    done_before = {tid: r.run_id for tid, r in before.trials.items() if r.state == "done"}
    interrupted = {tid: r.reports for tid, r in before.trials.items() if r.state == "running" and r.dev_curve}
    assert interrupted
    assert done_before and not before.finished and len(done_before) < len(lrs)

    # the killed driver's own folder verifies: every pickle Tune wrote mid-run was signed before it was uploaded
    verify(sweep_dir)
    original = (Path(sweep_dir) / "tuner.pkl").read_bytes()
    marker = tmp_path / "pwned"
    (Path(sweep_dir) / "tuner.pkl").write_bytes(pickle.dumps(Evil(marker)))  # someone with write access
    capsys.readouterr()
    with pytest.raises(XtunerError, match="tuner.pkl is not signed with your key"):
        resume_sweep(sweep_dir, quiet=True)
    assert not marker.exists()  # refused before anything was unpickled
    err = capsys.readouterr().err  # the first command after the kill took over the dead driver's lock
    assert f"pid {driver.pid} on host {socket.gethostname()}" in err and "no longer runs; taking over" in err
    (Path(sweep_dir) / "tuner.pkl").write_bytes(original)
    monkeypatch.setenv("XTUNER_HOME", str(tmp_path / "another-user"))  # the folder is not this user's
    with pytest.raises(XtunerError, match="another key"):
        resume_sweep(sweep_dir, quiet=True)

    after = resume_sweep(sweep_dir, quiet=True, trust_folder=True)  # they vouch for it
    assert after.finished and after.parent_run_id == before.parent_run_id
    assert sorted(r.params["lr"] for r in after.trials.values()) == lrs
    assert all(r.state == "done" for r in after.trials.values())
    for tid, run_id in done_before.items():  # finished trials: same run, never started again
        assert after.trials[tid].run_id == run_id and after.trials[tid].started == 1
    for tid, reports in interrupted.items():  # continued from a checkpoint: not all 3 epochs trained again
        rec = after.trials[tid]
        assert rec.started == 2 and [e for e, _ in rec.dev_curve] == [1.0, 2.0, 3.0]
        assert reports < rec.reports <= reports + 2
    for rec in after.trials.values():  # no dev point logged twice, before or after the kill
        epochs = [e for e, _ in rec.dev_curve]
        assert epochs == sorted(set(epochs))
    client = MlflowClient(mlflow_server)
    runs = children(client, after.parent_run_id)
    assert len(runs) == len(lrs)
    assert sorted(r.data.tags["xtuner.trial_id"] for r in runs) == sorted(after.trials)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert client.get_run(after.parent_run_id).info.status == "FINISHED"
    verify(sweep_dir)  # trusted once: the folder is now signed with this user's key
    assert SweepState.load(state_file).finished  # not overwritten by the copy Tune downloaded on the resume


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_sweep_whose_every_trial_fails_exits_1(ray_cluster, mlflow_server, tiny_model, tmp_path, capsys) -> None:
    raw = spec("allfail", tmp_path, mlflow_server, model=tiny_model, methods={"finetune": {"lr": [1.0e30]}})
    path = tmp_path / "allfail.yaml"
    path.write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    rc = cli_main(["sweep", "run", str(path), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "error: no trial of sweep allfail has results (0 failed, 1 with a non-finite loss)" in err
    state = SweepState.load(tmp_path / "results" / "allfail" / STATE_FILE)
    assert state.finished and [r.state for r in state.trials.values()] == ["nonfinite"]
