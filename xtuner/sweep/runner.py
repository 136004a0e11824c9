"""Sweep entry points, top-down: load + validate (`load_plan`) -> pre-flight (`preflight`) -> Tune (`run_sweep`,
`resume_sweep`) -> tables. Everything a user can get wrong fails before Ray starts; Ray is imported only when a
sweep really runs (`xtuner.sweep.tune`), never for a dry run or `status`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from xtuner.cluster.storage import check_storage
from xtuner.errors import XtunerError
from xtuner.sweep.checks import check_tracking
from xtuner.sweep.events import SweepEvents, replay_results
from xtuner.sweep.report import results_tables, status_table
from xtuner.sweep.space import SweepPlan, build_plan, check_models
from xtuner.sweep.spec import load_spec
from xtuner.sweep.state import (
    FINISHED,
    STATE_FILE,
    SweepState,
    exists,
    find_sweep_dir,
    join,
    parent,
    remove_tree,
    sweep_folder,
    write_text,
)


def load_plan(
    source: str | Path | dict,
    overrides: dict[str, Any] | None = None,
    *,
    tracking_uri: str | None = None,
    storage: str | None = None,
) -> SweepPlan:
    spec = load_spec(source, overrides, tracking_uri=tracking_uri, storage=storage)
    return build_plan(spec)


def preflight(plan: SweepPlan, *, overwrite: bool = False) -> tuple[str, str | None]:
    """Storage writable (a folder, s3:// or gs://), no sweep of that name there yet, tracking reachable, models
    available (built-in ones are built once here rather than by every trial). Returns (storage, tracking URI)."""
    spec = plan.spec
    storage = check_storage(spec.storage)
    sweep_dir = sweep_folder(storage, spec.name)
    if exists(join(sweep_dir, STATE_FILE)) or exists(join(sweep_dir, "tuner.pkl")):
        if not overwrite:
            raise XtunerError(
                f"sweep {spec.name!r} already exists in {str(sweep_dir)!r}: resume it with `xtuner sweep resume "
                f"{sweep_dir}`, pick another name (--set name=...), or start over with --overwrite"
            )
        remove_tree(sweep_dir)
    uri = spec.tracking.uri if spec.tracking.enabled else None
    if uri:
        check_tracking(uri)
    check_models(spec, resolve=True)
    return storage, uri


def run_sweep(
    plan: SweepPlan, *, overwrite: bool = False, quiet: bool = False, console: Console | None = None
) -> SweepState:
    storage, uri = preflight(plan, overwrite=overwrite)
    sweep_dir = sweep_folder(storage, plan.spec.name)
    write_text(
        join(sweep_dir, "sweep_spec.yaml"), yaml.safe_dump(plan.spec.model_dump(mode="json"), sort_keys=False)
    )
    events = SweepEvents(plan, sweep_dir, uri, quiet=quiet)  # opened (MLflow parent run) once Ray is up
    if not quiet:
        print(
            f"sweep {plan.spec.name}: {plan.n_trials} trials -> {sweep_dir}"
            + (f", tracking {uri}" if uri else "")
        )
    from xtuner.sweep import tune as backend

    backend.run(plan, storage, events)
    return _finish(events, console, quiet)


def resume_sweep(
    name_or_path: str,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    retry_errored: bool = False,
    quiet: bool = False,
    console: Console | None = None,
) -> SweepState:
    sweep_dir = find_sweep_dir(name_or_path, storage)
    state = SweepState.load(join(sweep_dir, STATE_FILE))
    spec_dict = dict(state.spec, storage=parent(sweep_dir))
    plan = build_plan(load_spec(spec_dict))
    uri = tracking_uri or state.tracking_uri if plan.spec.tracking.enabled else None
    if uri:
        check_tracking(uri)
    errored = [r for r in state.trials.values() if r.state == "error"]
    if state.finished and not (retry_errored and errored):
        if not quiet:
            print(f"sweep {state.name} already finished ({len(state.trials)} trials); nothing to resume")
        return _finish(SweepEvents(plan, sweep_dir, None, quiet=True), console, quiet)
    events = SweepEvents(plan, sweep_dir, uri, quiet=quiet)
    if not quiet:
        left = sum(1 for r in state.trials.values() if r.state not in FINISHED)
        print(
            f"resuming sweep {state.name} in {sweep_dir}: {len(state.trials)} trials started, {left} unfinished"
        )
    from xtuner.sweep import tune as backend

    replay = replay_results(state)
    backend.run(plan, parent(sweep_dir), events, resume=True, retry_errored=retry_errored, replay=replay)
    return _finish(events, console, quiet)


def _finish(events: SweepEvents, console: Console | None, quiet: bool) -> SweepState:
    events.open()
    state = events.state
    assert state is not None
    if not quiet:
        console = console or Console()
        for table in results_tables(state):
            console.print(table)
        if not state.finished:
            console.print(
                f"sweep stopped before the end; continue with: xtuner sweep resume {events.sweep_dir}"
            )
        if state.tracking_uri:
            ui = (
                f"mlflow ui --backend-store-uri {state.tracking_uri}"
                if not state.tracking_uri.startswith(("http://", "https://"))
                else f"open {state.tracking_uri}"
            )
            console.print(f"per-language results in MLflow ({state.tracking_uri}): {ui}")
        console.print(f"trial table: xtuner sweep status {state.name}")
    return state


def sweep_status(name_or_path: str, storage: str | None = None, console: Console | None = None) -> SweepState:
    sweep_dir = find_sweep_dir(name_or_path, storage)
    state = SweepState.load(join(sweep_dir, STATE_FILE))
    console = console or Console()
    console.print(status_table(state))
    for table in results_tables(state):
        console.print(table)
    return state
