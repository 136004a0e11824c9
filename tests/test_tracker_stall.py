"""A stopped tracking server delays no trial, and a planted password appears nowhere.

One real sweep (4 tiny trials of 2 epochs, one at a time, the session's Ray) run by the CLI in a subprocess against its own real
``mlflow server``. Passwords are planted in the tracking URI, the storage URI (``file://user:password@localhost/``),
a setting given with ``--set`` (a URL in ``description``; it reaches the runs' ``xtuner.command`` tag) and the driver's environment (MLFLOW_TRACKING_PASSWORD, HF_TOKEN).

- When the first trial's MLflow run exists, the server is stopped with SIGSTOP (a hung network or an overloaded
  server behaves so: connections are accepted, nothing answers). Two trials must then finish, as recorded by the
  state file, while it is still stopped and after the driver said so (with the writes made synchronously in Tune's
  loop, none did: Tune's loop waited for MLflow). The driver gets MLflow's timeouts shortened through the
  environment (5 s, no retry), as a user may, so that the test waits less than the default 2 x 10 s. The
  server is then resumed (SIGCONT) while trials remain: the driver's writer notices and backfills, and the sweep
  ends with MLflow complete (one parent, one child run per trial, every metric), without `sync` and without
  duplicates. The driver printed one warning for the outage and one line when the server answered again.
- Every file the sweep wrote (storage folder, the server's database and artifacts, Ray's session logs) and
  everything the driver printed is searched for each planted secret.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import start_mlflow_server, stop_mlflow_server
from faults import wait_for_state
from mlflow.tracking import MlflowClient

from xtuner.cli import main as cli_main
from xtuner.sweep.state import STATE_FILE, SweepState

pytestmark = pytest.mark.slow  # a real sweep of 3 tiny trials and its own mlflow server

TINY = {"max_train_examples": 256, "max_eval_examples": 32, "max_seq_length": 32, "batch_size": 16,
        "eval_batch_size": 32, "languages": ["en", "s3"]}  # fmt: skip
LRS = [1.0e-3, 2.0e-3, 3.0e-3, 5.0e-3]
SECRETS = {
    "uri": "UriPassw0rd4Track",
    "storage": "StoragePassw0rd4Sweep",
    "setting": "SettingPassw0rd4Wiki",
    "env_mlflow": "EnvMlflowPassw0rd",
    "env_hf": "hf_EnvPlantedToken9",
}


def grep_tree(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits += [f"{path}: {n.decode()}" for n in needles if n in data]
    return hits


def test_stopped_server_delays_no_trial_and_no_secret_leaks(ray_cluster, tiny_model, tmp_path, capsys) -> None:
    import ray

    (tmp_path / "server").mkdir()
    proc, uri = start_mlflow_server(tmp_path / "server")
    try:
        check_sweep(tmp_path, proc, uri, ray_cluster, tiny_model, capsys)
    finally:
        stop_mlflow_server(proc)
    needles = [s.encode() for s in SECRETS.values()]  # the server's database and artifacts included
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    hits = grep_tree(tmp_path, needles) + grep_tree(session / "logs", needles)
    hits = [h for h in hits if not h.startswith(str(tmp_path / "stall.yaml"))]  # the user's own spec has them
    assert not hits, hits


def check_sweep(tmp_path: Path, proc: subprocess.Popen, uri: str, ray_cluster: str, tiny_model: str, capsys) -> None:
    host = uri.removeprefix("http://")
    tracking = f"http://alice:{SECRETS['uri']}@{host}"
    results = tmp_path / "results"
    raw = {"name": "stall", "model": tiny_model, "tasks": ["synth-xnli"], "epochs": 2, "max_concurrent": 1,
           "methods": {"finetune": {"lr": LRS}}, "trial": dict(TINY),
           "tracking": {"uri": tracking, "experiment": "test-stall"},
           "storage": f"file://carol:{SECRETS['storage']}@localhost{results}"}  # fmt: skip
    spec = tmp_path / "stall.yaml"
    spec.write_text(yaml.safe_dump(raw))
    env = dict(os.environ, RAY_ADDRESS=ray_cluster, PYTHONUNBUFFERED="1", MLFLOW_TRACKING_USERNAME="alice",
               MLFLOW_TRACKING_PASSWORD=SECRETS["env_mlflow"], HF_TOKEN=SECRETS["env_hf"],
               MLFLOW_HTTP_REQUEST_TIMEOUT="5", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")  # fmt: skip
    out, err = open(tmp_path / "driver.out", "wb"), open(tmp_path / "driver.err", "wb")  # noqa: SIM115
    # the setting comes from the command line: it is in the runs' xtuner.command tag too, which must mask it
    setting = f"description=see https://bob:{SECRETS['setting']}@wiki.example/page"
    driver = subprocess.Popen([sys.executable, "-m", "xtuner", "sweep", "run", str(spec), "--set", setting],
                              cwd=tmp_path, env=env, stdout=out, stderr=err)  # fmt: skip
    state_file = results / "stall" / STATE_FILE
    alive = lambda: driver.poll() is None  # noqa: E731
    done_while_stopped: list[str] = []
    try:
        assert wait_for_state(str(state_file), lambda s: any(r.run_id for r in s.trials.values()), timeout=300,
                              alive=alive), (tmp_path / "driver.err").read_text()  # fmt: skip
        os.killpg(proc.pid, signal.SIGSTOP)
        deadline = time.time() + 300
        while alive() and time.time() < deadline:  # until two trials are done and the driver has said so
            done = [r.trial_id for r in SweepState.load(state_file).trials.values() if r.state == "done"]
            if len(done) >= 2 and "is slow or unreachable" in (tmp_path / "driver.err").read_text():
                done_while_stopped = done
                break
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGCONT)
        driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
        out.close()
        err.close()
        os.killpg(proc.pid, signal.SIGCONT)
    stdout, stderr = (tmp_path / "driver.out").read_text(), (tmp_path / "driver.err").read_text()
    assert len(done_while_stopped) >= 2, stderr  # trials went on at their pace while MLflow hung
    assert driver.returncode == 0, stderr
    assert stderr.count("is slow or unreachable") == 1 and stderr.count("answers again:") == 1, stderr
    assert "Traceback" not in stderr and "still lacks" not in stderr

    state = SweepState.load(state_file)
    assert state.finished and state.tracking_pending == [] and len(state.trials) == len(LRS)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("test-stall")
    runs = client.search_runs([exp.experiment_id], max_results=50)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == state.parent_run_id]
    assert [p.info.run_id for p in parents] == [state.parent_run_id] and len(kids) == len(LRS) == len(runs) - 1
    assert sorted(r.data.tags["xtuner.trial_id"] for r in kids) == sorted(state.trials)
    for run in kids:
        rec = state.trials[run.data.tags["xtuner.trial_id"]]
        assert run.info.run_id == rec.run_id and run.info.status == "FINISHED"
        assert run.data.metrics["test/s3/accuracy"] == pytest.approx(rec.final["test/s3/accuracy"])
        assert [h.step for h in client.get_metric_history(run.info.run_id, "dev/en/accuracy")] == [1, 2]
    assert client.get_run(state.parent_run_id).info.status == "FINISHED"

    # the password of the tracking URI is not stored: sync asks for it, or takes MLflow's environment credentials
    capsys.readouterr()
    assert cli_main(["sweep", "sync", str(results / "stall")]) == 2
    assert "whose password xtuner does not store" in capsys.readouterr().err
    for text in (stdout, stderr):
        assert not [s for s in SECRETS.values() if s in text]
    assert "alice:***@" in stdout  # the URI was printed, masked
