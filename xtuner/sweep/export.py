"""Sweeps for programs: `status_dict` (``xtuner sweep status NAME --json``), `list_sweeps` (``xtuner sweep list``)
and `results` (``xtuner.sweep.results(NAME)``: a pandas DataFrame, one row per trial, its config and final metrics;
the equivalent of Ray's ``ExperimentAnalysis(...).dataframe()``). Everything reads the sweep state file
(`xtuner.sweep.state`) and the driver lock; no Ray, no MLflow.

A sweep's state: ``running`` (a driver holds its lock), ``finished`` (every trial ended and the sweep closed),
``stopped`` (interrupted: ``xtuner sweep resume`` continues it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from xtuner.cluster.redact import redact, redact_text
from xtuner.errors import XtunerError
from xtuner.sweep.state import (
    STATE_FILE,
    SweepState,
    TrialRecord,
    find_sweep_dir,
    is_remote,
    join,
    list_names,
)

DEFAULT_STORAGE = "./xtuner_results"


def sweep_state(state: SweepState, sweep_dir: str) -> str:
    """running, finished or stopped (see the module doc)."""
    from xtuner.sweep.lock import DriverLock

    try:
        DriverLock(sweep_dir, "sweep status").probe()
    except XtunerError:
        return "running"
    return "finished" if state.finished else "stopped"


def _when(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


def trial_dict(rec: TrialRecord) -> dict[str, Any]:
    seconds = rec.end_time - rec.start_time if rec.end_time and rec.start_time else None
    return {
        "trial_id": rec.trial_id, "task": rec.task, "method": rec.method, "model": rec.model, "seed": rec.seed,
        "group": rec.group, "status": rec.state, "config": redact(rec.params), "searched": rec.searched_values(),
        "main_metric": rec.main_metric, "best_dev": rec.best_dev, "dev_curve": rec.dev_curve,
        "metrics": rec.final, "run_id": rec.run_id, "error": rec.error, "failures": rec.failures,
        "started_at": _when(rec.start_time), "ended_at": _when(rec.end_time), "seconds": seconds,
        "weights": rec.weights,
        "predictions": rec.predictions,
        "train_loss": rec.train_loss,
    }  # fmt: skip


def status_dict(state: SweepState, sweep_dir: str) -> dict[str, Any]:
    """The sweep as one JSON-ready object: its state, tracking (MLflow parent run), best configurations and trials."""
    from xtuner.sweep.report import best_configs

    trials = sorted(state.trials.values(), key=lambda r: (r.task, r.method, r.trial_id))
    return {
        "sweep": state.name,
        "folder": redact_text(str(sweep_dir)),
        "state": sweep_state(state, sweep_dir),
        "finished": state.finished,
        "counts": {k: v for k, v in state.counts().items() if v},
        "tracking": {
            "uri": redact_text(state.tracking_uri) if state.tracking_uri else None,
            "experiment_id": state.experiment_id,
            "parent_run_id": state.parent_run_id,
            "pending": state.pending(),
        },  # fmt: skip
        "best": best_configs(state),
        "trials": [trial_dict(r) for r in trials],
    }


def load(name_or_path: str, storage: str | None = None) -> tuple[SweepState, str]:
    sweep_dir = find_sweep_dir(name_or_path, storage)
    return SweepState.load(join(sweep_dir, STATE_FILE)), sweep_dir


def list_sweeps(storage: str | None = None) -> list[dict[str, Any]]:
    """The sweeps directly under `storage` (default ./xtuner_results): name, state, trial counts, first trial start
    and last trial end. A folder whose state file cannot be read is listed with its error."""
    root = storage or DEFAULT_STORAGE
    out = []
    for name in list_names(root if is_remote(root) else str(root)):
        folder = join(root, name)
        path = join(folder, STATE_FILE)
        try:
            if name.startswith(".") or not _exists(path):
                continue
            state = SweepState.load(path)
        except XtunerError as e:
            out.append({"sweep": name, "folder": folder, "state": "unreadable", "error": str(e)})
            continue
        starts = [r.start_time for r in state.trials.values() if r.start_time]
        ends = [r.end_time for r in state.trials.values() if r.end_time]
        out.append({"sweep": state.name, "folder": redact_text(folder), "state": sweep_state(state, folder),
                    "trials": len(state.trials), "counts": {k: v for k, v in state.counts().items() if v},
                    "started_at": _when(min(starts) if starts else None),
                    "last_trial_end": _when(max(ends) if ends else None),
                    "parent_run_id": state.parent_run_id})  # fmt: skip
    return out


def _exists(path: str) -> bool:
    from xtuner.sweep.state import exists

    return exists(path)


def results(name_or_path: str, storage: str | None = None):
    """One row per trial of the sweep (a name under `storage`, default ./xtuner_results, or its folder):
    ``trial_id``, ``task``, ``method``, ``model``, ``seed``, ``status``, ``run_id``, ``best_dev`` (the selected en-dev
    main metric), every final metric under its own name (``test/<lang>/<metric>``, ``test/avg/...``,
    ``test/gap/...``, ``dev/en/...``, ``train_seconds``, ...), and the trial's flat config as ``config/<key>``, as
    Ray's ``ExperimentAnalysis(...).dataframe()`` names it. Pruned and failed trials have no test metrics (NaN)."""
    import pandas as pd

    state, _ = load(name_or_path, storage)
    rows = []
    for rec in sorted(state.trials.values(), key=lambda r: (r.task, r.method, r.trial_id)):
        row: dict[str, Any] = {"trial_id": rec.trial_id, "task": rec.task, "method": rec.method,
                               "model": rec.model, "seed": rec.seed, "status": rec.state, "run_id": rec.run_id,
                               "best_dev": rec.best_dev}  # fmt: skip
        row.update(rec.final)
        row.update({f"config/{k}": _cell(v) for k, v in redact(rec.params).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(value: Any) -> Any:
    """Lists (languages) as text, so that every column holds scalars."""
    import json

    return json.dumps(value) if isinstance(value, list | dict) else value
