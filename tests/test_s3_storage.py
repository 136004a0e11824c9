"""Sweep storage on ``s3://``: a real S3-protocol server (``moto_server``, a process on 127.0.0.1) behind pyarrow's
S3 filesystem, the same code path as AWS S3 (only ``AWS_ENDPOINT_URL`` differs). The sweep runs in its own process
(tests/s3_scenario.py) with a Ray that passes the endpoint and credentials to its workers.

Checked: the write probe passes, and names the URI for a missing bucket; the whole sweep (Tune's
state, checkpoints, the sweep state file, the spec) lives in the bucket and nothing in a local results folder;
a trial whose worker is killed resumes from its checkpoint in S3 (downloaded into ``XTUNER_TMP``, removed when the
trial ends) in the same MLflow run; retention leaves no checkpoint of a finished trial in the bucket;
``xtuner sweep status s3://...`` reads the state from the bucket; and a sweep whose driver is killed is finished by
``resume_sweep("s3://...")`` with the same MLflow runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, wait_http
from mlflow.tracking import MlflowClient

from xtuner.cluster.storage import check_storage
from xtuner.errors import XtunerError

pytestmark = pytest.mark.slow  # about 100 s on 2 loaded cores

SCENARIO = Path(__file__).with_name("s3_scenario.py")
BUCKET = "xtuner-test"


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto S3 server on a free loopback port with one bucket; yields the environment that points at it."""
    moto = Path(sys.executable).with_name("moto_server")
    if not moto.exists():
        moto = Path(shutil.which("moto_server") or "moto_server")
    port = free_port()
    log_dir = tmp_path_factory.mktemp("moto")
    log = open(log_dir / "moto.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/", timeout=60, proc=proc)
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                     aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=BUCKET)  # fmt: skip
        yield env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def test_storage_probe_on_s3(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    assert check_storage(f"s3://{BUCKET}/sweeps") == f"s3://{BUCKET}/sweeps"
    # a bucket that does not exist is named (moto does not check credentials: test_cluster_utils.py covers them)
    with pytest.raises(XtunerError, match=r"storage 's3://no-such-bucket-xt/sweeps': "):
        check_storage("s3://no-such-bucket-xt/sweeps")


def test_driver_lease_on_s3(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Object stores have no locks: the driver lock is a lease object (xtuner.sweep.lock)."""
    import time

    from xtuner.sweep.lock import LOCK_FILE, DriverLock
    from xtuner.sweep.state import exists, write_text

    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    folder = f"s3://{BUCKET}/leases/sweep"
    with DriverLock(folder, "sweep run") as first:
        assert first.held and exists(f"{folder}/{LOCK_FILE}")
        with pytest.raises(XtunerError, match="in use by sweep run"):
            DriverLock(folder, "sweep resume").acquire()
    assert not exists(f"{folder}/{LOCK_FILE}")  # a clean release removes the lease
    gone = {"role": "sweep run", "host": "gone", "pid": 1, "started": 1.0, "token": "x", "heartbeat": time.time() - 999}
    write_text(f"{folder}/{LOCK_FILE}", json.dumps(gone))  # a driver that stopped renewing its lease
    with DriverLock(folder, "sweep resume") as lock:
        assert lock.taken_over is not None and lock.taken_over["host"] == "gone"


@pytest.fixture(scope="module")
def s3_sweep(s3_env, mlflow_server, tiny_model, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("s3-sweep")
    xt_tmp = work / "xtuner-tmp"
    xt_tmp.mkdir()
    out = work / "result.json"
    env = {**os.environ, **s3_env, "XTUNER_TMP": str(xt_tmp), "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, str(SCENARIO), "--storage", f"s3://{BUCKET}/sweeps", "--tracking-uri", mlflow_server,
           "--model", tiny_model, "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=480, cwd=work, env=env)  # 285 s seen at load 12
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_sweep_on_s3_keeps_everything_in_the_bucket(s3_sweep: dict) -> None:
    assert s3_sweep["finished"] and [t["state"] for t in s3_sweep["trials"].values()] == ["done", "done"]
    files = s3_sweep["bucket_files"]
    assert {"xtuner_sweep.json", "sweep_spec.yaml", "tuner.pkl"} <= set(files)
    assert any(f.startswith("experiment_state-") for f in files)
    assert not any("/checkpoint_" in f for f in files)  # finished trials' checkpoints were deleted (retention)
    assert not s3_sweep["local_results_exists"]
    assert s3_sweep["status_rc"] == 0 and "2 done" in s3_sweep["status_output"]
    for tid in s3_sweep["trials"]:  # per-example predictions, written by the workers into the bucket
        assert {f"predictions/{tid}/{f}" for f in ("meta.json", "en.parquet", "s3.parquet")} <= set(files)


def test_killed_trial_resumes_from_its_checkpoint_in_s3(s3_sweep: dict, mlflow_server: str) -> None:
    victim = s3_sweep["victim"]
    assert victim, "no trial was killed"
    rec = s3_sweep["trials"][victim["trial_id"]]
    assert rec["failures"] == 1 and rec["started"] == 2 and rec["pid"] != victim["pid"]
    assert rec["epochs"] == [1.0, 2.0, 3.0] and rec["reports"] <= victim["reports"] + 2  # not from scratch
    assert rec["run_id"] == victim["run_id"]
    # the checkpoint download and every trial's output folder are gone (the dead worker's too)
    assert s3_sweep["xtuner_tmp_left"] == []
    client = MlflowClient(mlflow_server)
    parent = client.get_run(s3_sweep["parent_run_id"])
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(r.info.run_id for r in runs) == sorted(t["run_id"] for t in s3_sweep["trials"].values())
    assert [m.step for m in client.get_metric_history(victim["run_id"], "dev/en/accuracy")] == [1, 2, 3]
    # the predictions the retried trial wrote into the bucket reached its run (the driver downloads, then uploads)
    arts = {f.path for f in client.list_artifacts(victim["run_id"], "predictions")}
    assert arts == {"predictions/meta.json", "predictions/en.parquet", "predictions/s3.parquet"}


def test_driver_killed_sweep_resumes_from_the_bucket(s3_sweep: dict, mlflow_server: str) -> None:
    r = s3_sweep["resume"]
    assert r["killed"], r["driver_log"]
    done_before = {tid: t["run_id"] for tid, t in r["before"].items() if t["state"] == "done"}
    interrupted = {tid: t["reports"] for tid, t in r["before"].items() if t["state"] == "running" and t["reports"]}
    assert done_before and interrupted and len(done_before) < 3
    assert r["finished"] and r["parent_after"] == r["parent_before"]
    assert [t["state"] for t in r["after"].values()] == ["done"] * 3
    for tid, run_id in done_before.items():  # finished before the kill: same run, never started again
        assert r["after"][tid]["run_id"] == run_id and r["after"][tid]["started"] == 1
    for tid, reports in interrupted.items():  # continued from its checkpoint in the bucket
        t = r["after"][tid]
        assert t["started"] == 2 and t["epochs"] == [1.0, 2.0, 3.0] and t["reports"] <= reports + 2
    client = MlflowClient(mlflow_server)
    parent = client.get_run(r["parent_after"])
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(x.info.run_id for x in runs) == sorted(t["run_id"] for t in r["after"].values())
    assert parent.info.status == "FINISHED"
