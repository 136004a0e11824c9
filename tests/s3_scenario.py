"""A sweep whose storage is ``s3://`` (a real S3-protocol server, moto, on 127.0.0.1), with a trial worker killed.

Run as its own process (tests/test_s3_storage.py) because the endpoint and credentials reach pyarrow, Ray Tune and
the trial workers through the environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), which a Ray started
by this process passes on to its workers; the pytest process already holds a Ray without them.

Everything of the sweep goes to the bucket: Tune's experiment state and the trial checkpoints, ``sweep_spec.yaml``
and the sweep state file (which the killer thread polls through pyarrow, as `xtuner sweep status` reads it). After
the first epoch of one trial its worker is SIGKILLed; Tune restarts it from the checkpoint in S3, which the new
worker downloads (`TuneReporter.resume_from`) into ``XTUNER_TMP``. The JSON result names the victim, every trial's
final state, what is left in the bucket and in ``XTUNER_TMP``, and the output of ``xtuner sweep status URI``.

Then a second sweep in the same bucket is run by a CLI driver process that is SIGKILLed mid-sweep (one trial done,
the next past its first epoch); ``resume_sweep("s3://...")`` finishes it from what the bucket holds
(`kill_driver_then_resume`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--storage", required=True, help="s3://bucket/prefix")
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    ray_tmp = tempfile.mkdtemp(prefix="xts3-", dir="/tmp")  # short: it holds unix sockets
    os.environ["RAY_TMPDIR"] = ray_tmp
    try:
        return run(args.storage, args.tracking_uri, args.model, Path(args.out))
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def run(storage: str, tracking_uri: str, model: str, out: Path) -> int:
    import pyarrow.fs as pafs
    import ray
    from faults import WorkerKiller

    from xtuner.cli import main as cli_main
    from xtuner.sweep.runner import load_plan, run_sweep
    from xtuner.sweep.state import STATE_FILE, join

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)  # fmt: skip
    name = "s3-sweep"
    sweep_uri = join(storage, name)
    spec = {
        "name": name,
        "model": model,
        "tasks": ["synth-xnli"],
        "methods": {"finetune": {"lr": [1.0e-3, 3.0e-3]}},
        "epochs": 3,
        "max_concurrent": 2,
        "max_failures": 1,
        "trial": {"max_train_examples": 768, "max_eval_examples": 32, "max_seq_length": 32, "batch_size": 16,
                  "eval_batch_size": 32, "languages": ["en", "s3"]},
        "tracking": {"uri": tracking_uri, "experiment": "test-s3-storage"},
        "storage": storage,
    }  # fmt: skip
    killer = WorkerKiller(join(sweep_uri, STATE_FILE))
    killer.start()
    t0 = time.time()
    try:
        state = run_sweep(load_plan(spec), quiet=True)
        killer.join(timeout=5)
        seconds = time.time() - t0
        tmp = Path(os.environ["XTUNER_TMP"])
        tmp_left = sorted(p.name for p in tmp.iterdir())  # before the second sweep adds its own
        resume = kill_driver_then_resume(storage, tracking_uri, model, out.parent)
    finally:
        ray.shutdown()

    fs, root = pafs.FileSystem.from_uri(sweep_uri)
    names = sorted(
        i.path.removeprefix(root).lstrip("/")
        for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))
        if i.type == pafs.FileType.File
    )
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status_rc = cli_main(["sweep", "status", sweep_uri])
    result = {
        "seconds": seconds,
        "victim": killer.victim,
        "kill_problem": killer.problem,
        "finished": state.finished,
        "parent_run_id": state.parent_run_id,
        "trials": {
            tid: {"state": r.state, "run_id": r.run_id, "failures": r.failures, "started": r.started,
                  "reports": r.reports, "epochs": [e for e, _ in r.dev_curve], "pid": r.pid}
            for tid, r in state.trials.items()
        },  # fmt: skip
        "bucket_files": names,
        "status_rc": status_rc,
        "status_output": buf.getvalue(),
        "xtuner_tmp_left": tmp_left,
        "local_results_exists": Path("xtuner_results").exists(),
        "resume": resume,
    }
    out.write_text(json.dumps(result, indent=1, sort_keys=True))
    return 0


def wait_for_experiment_state_upload(uri: str, *, after: float, timeout: float) -> None:
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(uri)
    deadline = time.time() + timeout
    while time.time() < deadline:
        infos = fs.get_file_info(pafs.FileSelector(root))
        times = [i.mtime.timestamp() for i in infos if i.base_name.startswith("experiment_state-") and i.mtime]
        if times and max(times) > after + 1.0:  # S3 times are whole seconds
            return
        time.sleep(0.2)


def kill_driver_then_resume(storage: str, tracking_uri: str, model: str, work: Path) -> dict:
    """A CLI driver (joining this process's Ray) runs a sweep stored in S3 and is SIGKILLed once one trial is done
    and the next is past its first epoch; `resume_sweep(URI)` then finishes it from the bucket alone."""
    import ray
    import yaml
    from faults import one_done_one_started, wait_for_state

    from xtuner.sweep.runner import resume_sweep
    from xtuner.sweep.state import STATE_FILE, SweepState, join

    name = "s3-resume"
    uri = join(storage, name)
    spec = {
        "name": name, "model": model, "tasks": ["synth-xnli"], "methods": {"finetune": {"lr": [1.0e-3, 2.0e-3, 3.0e-3]}},
        "epochs": 3, "max_concurrent": 1,
        "trial": {"max_train_examples": 512, "max_eval_examples": 32, "max_seq_length": 32, "batch_size": 16,
                  "eval_batch_size": 32, "languages": ["en", "s3"]},
        "tracking": {"uri": tracking_uri, "experiment": "test-s3-resume"}, "storage": storage,
    }  # fmt: skip
    path = work / "s3-resume.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address, TUNE_GLOBAL_CHECKPOINT_S="0.5")
    log = open(work / "s3-driver.log", "wb")  # noqa: SIM115
    driver = subprocess.Popen([sys.executable, "-m", "xtuner", "sweep", "run", str(path)], cwd=work, env=env,
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    killed = False
    try:
        if wait_for_state(join(uri, STATE_FILE), one_done_one_started, timeout=200, alive=lambda: driver.poll() is None):
            # kill only once Tune's experiment state (it lists the trial's epoch-1 checkpoint) has been
            # uploaded after this moment: it is what resume restores from
            wait_for_experiment_state_upload(uri, after=time.time(), timeout=20)
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=30)
            killed = True
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    before = SweepState.load(join(uri, STATE_FILE))
    after = resume_sweep(uri, quiet=True)
    return {
        "killed": killed,
        "driver_log": (work / "s3-driver.log").read_text()[-2000:],
        "before": {tid: {"state": r.state, "run_id": r.run_id, "reports": r.reports} for tid, r in before.trials.items()},
        "after": {tid: {"state": r.state, "run_id": r.run_id, "reports": r.reports, "started": r.started,
                        "epochs": [e for e, _ in r.dev_curve]} for tid, r in after.trials.items()},
        "finished": after.finished,
        "parent_before": before.parent_run_id,
        "parent_after": after.parent_run_id,
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
