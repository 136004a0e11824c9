"""Failure injection shared by the fault tests and their subprocess scenarios (importable from both: pytest puts
tests/ on the path, and a scenario script run by path has its own folder there).

- `wait_for_state`: poll a sweep's state file (a local path or an ``s3://`` URI) until a condition holds;
- `first_epoch_trial` / `one_done_one_started`: the conditions the tests wait for;
- `WorkerKiller`: a thread that SIGKILLs the Ray worker of the first trial past its first epoch (so it has a
  checkpoint), refusing any process that is not a Ray worker.
"""

from __future__ import annotations

import glob
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from xtuner.errors import XtunerError
from xtuner.sweep.state import SweepState, TrialRecord
from xtuner.trial import scratch


def wait_for_state(path: str, condition: Callable[[SweepState], Any], *, timeout: float = 180,
                   period: float = 0.1, alive: Callable[[], bool] | None = None) -> Any:  # fmt: skip
    """The first truthy `condition(state)`, or None after `timeout` (or once `alive()` turns false)."""
    deadline = time.time() + timeout
    while time.time() < deadline and (alive is None or alive()):
        try:
            found = condition(SweepState.load(path))
        except XtunerError:  # not written yet, or read while being replaced
            found = None
        if found:
            return found
        time.sleep(period)
    return None


def first_epoch_trial(state: SweepState) -> TrialRecord | None:
    """A running trial past its first epoch whose checkpoint Tune has registered (Tune processes the save after the
    dev result, so waiting for the result alone races with it under load)."""
    return next((r for r in state.trials.values()
                 if r.state == "running" and len(r.dev_curve) == 1 and r.checkpoints >= 1 and r.pid), None)  # fmt: skip


def one_done_one_started(state: SweepState) -> bool:
    """A trial has finished all 3 epochs and the next one is past its first, with that checkpoint registered."""
    states = [(r.state, len(r.dev_curve), r.checkpoints >= 1) for r in state.trials.values()]
    return ("done", 3, True) in states and ("running", 1, True) in states


def kill_ray_worker(pid: int) -> str:
    """SIGKILL `pid` if it is a Ray worker; returns its command line."""
    import psutil

    cmdline = " ".join(psutil.Process(pid).cmdline())
    if "ray::" not in cmdline:
        raise RuntimeError(f"pid {pid} is not a Ray worker: {cmdline[:200]!r}")
    os.kill(pid, signal.SIGKILL)
    return cmdline


class WorkerKiller(threading.Thread):
    """Waits until a trial has reported its first epoch, then SIGKILLs its worker (`victim`, or `problem`)."""

    def __init__(self, state_path: str, timeout: float = 180) -> None:
        super().__init__(daemon=True)
        self.state_path, self.timeout = state_path, timeout
        self.victim: dict[str, Any] = {}
        self.temp_dirs: list[str] = []  # the victim's temp output folder (its Trainer checkpoints)
        self.problem: str | None = None

    def run(self) -> None:
        rec = wait_for_state(self.state_path, first_epoch_trial, timeout=self.timeout)
        if rec is None:
            self.problem = "no trial reached its first epoch in time"
            return
        self.temp_dirs = glob.glob(f"{scratch.tmp_root()}/xtuner-trial-{rec.pid}-*")
        try:
            cmdline = kill_ray_worker(rec.pid)
        except Exception as e:  # noqa: BLE001 - reported to the test
            self.problem = f"could not kill pid {rec.pid}: {e}"
            return
        self.victim = {"trial_id": rec.trial_id, "pid": rec.pid, "run_id": rec.run_id, "reports": rec.reports,
                       "cmdline": cmdline[:200]}  # fmt: skip
