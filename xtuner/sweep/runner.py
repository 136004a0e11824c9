"""Sweep entry points, top-down: load + validate (`load_plan`) -> pre-flight (`check_sweep`, then the driver lock
and `claim_folder`) -> Tune (`run_sweep`, `resume_sweep`) -> tables. Everything a user can get wrong fails before Ray
starts; Ray is imported only when a sweep really runs (`xtuner.sweep.tune`), never for a dry run or `status`.

One driver per sweep: `run`, `resume` (and `sync`) hold `xtuner.sweep.lock.DriverLock` on the sweep folder for as
long as they write it; a second one gets one error naming the holder. A resume verifies the folder's pickles
against the user's key first (`xtuner.sweep.signing`; ``trust_folder`` overrides).

A tracking URI with a password is never written (the state file stores it masked): `resume` and `sync` take it again
from ``--tracking-uri``, or use the masked URI without its password when MLFLOW_TRACKING_USERNAME/PASSWORD are set
(`tracking_uri_for`).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from xtuner.cluster.redact import MASK, redact, redact_text, register_secrets_in
from xtuner.cluster.storage import check_storage
from xtuner.errors import XtunerError
from xtuner.sweep.checks import check_tracking
from xtuner.sweep.events import SweepEvents, replay_results
from xtuner.sweep.limits import check_models
from xtuner.sweep.lock import DriverLock, describe, remove_contents
from xtuner.sweep.report import error_lines, results_tables, status_table
from xtuner.sweep.space import SweepPlan, build_plan
from xtuner.sweep.spec import load_spec
from xtuner.sweep.state import (
    FINISHED,
    STATE_FILE,
    SweepState,
    exists,
    find_sweep_dir,
    is_remote,
    join,
    parent,
    sweep_folder,
    write_text,
)

TRACKING_DRAIN_S = 60.0  # at the end, how long the MLflow writer may take to finish (or, when down, to recover)


def load_plan(
    source: str | Path | dict,
    overrides: dict[str, Any] | None = None,
    *,
    tracking_uri: str | None = None,
    storage: str | None = None,
) -> SweepPlan:
    spec = load_spec(source, overrides, tracking_uri=tracking_uri, storage=storage)
    return build_plan(spec)


def check_sweep(plan: SweepPlan) -> tuple[str, str, str | None]:
    """Storage writable (a folder, s3:// or gs://), tracking reachable, models available (built-in ones are built
    once here rather than by every trial); nothing is written in the sweep folder. Returns (storage, sweep folder,
    tracking URI)."""
    spec = plan.spec
    storage = check_storage(spec.storage)
    sweep_dir = sweep_folder(storage, spec.name)
    DriverLock(sweep_dir, "sweep run").probe()  # a second driver is refused before the slower checks
    uri = spec.tracking.uri if spec.tracking.enabled else None
    if uri:
        check_tracking(uri)
    check_models(spec, resolve=True)
    return storage, sweep_dir, uri


def claim_folder(sweep_dir: str, name: str, overwrite: bool) -> None:
    """Under the driver lock: refuse an existing sweep of that name unless `overwrite` (which empties the folder)."""
    if sweep_exists(sweep_dir):
        if not overwrite:
            raise name_in_use(sweep_dir, name)
        remove_contents(sweep_dir)


def sweep_exists(sweep_dir: str) -> bool:
    return exists(join(sweep_dir, STATE_FILE)) or exists(join(sweep_dir, "tuner.pkl"))


def name_in_use(sweep_dir: str, name: str) -> XtunerError:
    return XtunerError(f"sweep {name!r} already exists in {str(sweep_dir)!r}: resume it with `xtuner sweep resume "
                       f"{sweep_dir}`, pick another name (--set name=...), or start over with --overwrite")  # fmt: skip


def check_dry_run(plan: SweepPlan, overwrite: bool) -> None:
    """What a dry run can check without writing or connecting anywhere: the sweep name is free in a local storage
    folder (the real run's error), unless --overwrite."""
    storage = plan.spec.storage
    if overwrite or is_remote(storage):
        return
    sweep_dir = sweep_folder(storage, plan.spec.name)
    if sweep_exists(sweep_dir):
        raise name_in_use(sweep_dir, plan.spec.name)


def preflight(plan: SweepPlan, *, overwrite: bool = False) -> tuple[str, str | None]:
    """`check_sweep` and `claim_folder` under a lock held only for the check. Returns (storage, tracking URI)."""
    storage, sweep_dir, uri = check_sweep(plan)
    with _locked(sweep_dir, "sweep run"):
        claim_folder(sweep_dir, plan.spec.name, overwrite)
    return storage, uri


def run_sweep(
    plan: SweepPlan, *, overwrite: bool = False, quiet: bool = False, console: Console | None = None
) -> SweepState:
    storage, sweep_dir, uri = check_sweep(plan)
    with _locked(sweep_dir, "sweep run"):
        claim_folder(sweep_dir, plan.spec.name, overwrite)
        spec_text = yaml.safe_dump(redact(plan.spec.model_dump(mode="json")), sort_keys=False)
        try:
            write_text(join(sweep_dir, "sweep_spec.yaml"), spec_text)
        except OSError as e:
            raise XtunerError(f"storage {sweep_dir}: cannot write sweep_spec.yaml ({e.strerror or e})") from None
        events = SweepEvents(plan, sweep_dir, uri, quiet=quiet, overwrite=overwrite)  # opened once Ray is up
        events.prepare_tracking()  # MLflow's import and store open in a thread while Ray starts
        for line in plan.warnings:
            print(line, file=sys.stderr)
        if not quiet:
            print(
                f"sweep {plan.spec.name}: {plan.n_trials} trials -> {sweep_dir}"
                + (f", tracking {redact_text(uri)}" if uri else "")
            )
        from xtuner.sweep import tune as backend

        try:
            backend.run(plan, storage, events)
        finally:
            events.close_tracking(TRACKING_DRAIN_S)
        return _finish(events, console, quiet)


def resume_sweep(
    name_or_path: str,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    retry_errored: bool = False,
    trust_folder: bool = False,
    quiet: bool = False,
    console: Console | None = None,
) -> SweepState:
    sweep_dir = find_sweep_dir(name_or_path, storage)
    with _locked(sweep_dir, "sweep resume"):
        state = SweepState.load(join(sweep_dir, STATE_FILE))
        spec_dict = dict(state.spec, storage=parent(sweep_dir))
        plan = build_plan(load_spec(spec_dict))
        uri = tracking_uri_for(state, tracking_uri) if plan.spec.tracking.enabled else None
        if uri:
            check_tracking(uri)
        errored = [r for r in state.trials.values() if r.state == "error"]
        if state.finished and not (retry_errored and errored):
            if not quiet:
                print(f"sweep {state.name} already finished ({len(state.trials)} trials); nothing to resume")
            return _finish(SweepEvents(plan, sweep_dir, None, quiet=True), console, quiet)
        from xtuner.sweep import signing

        with signing.trusting(sweep_dir) if trust_folder else contextlib.nullcontext():
            if trust_folder:
                print(f"note: trusting {sweep_dir} (--trust-folder); its files are now signed with your key",
                      file=sys.stderr)  # fmt: skip
            return _resume(plan, state, sweep_dir, uri, retry_errored, quiet, console)


def _resume(plan: SweepPlan, state: SweepState, sweep_dir: str, uri: str | None, retry_errored: bool, quiet: bool,
            console: Console | None) -> SweepState:  # fmt: skip
    events = SweepEvents(plan, sweep_dir, uri, quiet=quiet)
    events.prepare_tracking()
    if not quiet:
        left = sum(1 for r in state.trials.values() if r.state not in FINISHED)
        print(f"resuming sweep {state.name} in {sweep_dir}: {len(state.trials)} trials started, {left} unfinished")
    from xtuner.sweep import tune as backend

    replay = replay_results(state)
    try:
        backend.run(plan, parent(sweep_dir), events, resume=True, retry_errored=retry_errored, replay=replay)
    finally:
        events.close_tracking(TRACKING_DRAIN_S)
    return _finish(events, console, quiet)


def tracking_uri_for(state: SweepState, given: str | None) -> str | None:
    """The URI to track a resumed or synced sweep with: `given` (--tracking-uri), else the one the sweep used. That
    one is stored without its password (``user:***@``): with MLFLOW_TRACKING_USERNAME/PASSWORD set it is used without
    the user part (MLflow sends those), otherwise the user must give it again."""
    import os
    import re

    if given:
        register_secrets_in(given)
        return given
    uri = state.tracking_uri
    if not uri or f":{MASK}@" not in uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_USERNAME") and os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        return re.sub(r"://[^/@]*@", "://", uri, count=1)
    raise XtunerError(f"sweep {state.name!r} was tracked at {uri}, whose password xtuner does not store: pass "
                      "--tracking-uri with it again, or set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")  # fmt: skip


class _locked:
    """The driver lock of `sweep_dir` for a `with` block; prints a note when it takes over a dead driver's lock."""

    def __init__(self, sweep_dir: str, role: str) -> None:
        self.lock = DriverLock(sweep_dir, role)

    def __enter__(self) -> DriverLock:
        self.lock.acquire()
        if self.lock.taken_over:
            print(f"note: {describe(self.lock.taken_over)} no longer runs; taking over its lock on "
                  f"{self.lock.sweep_dir}", file=sys.stderr)  # fmt: skip
        return self.lock

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def _finish(events: SweepEvents, console: Console | None, quiet: bool) -> SweepState:
    events.open()
    state = events.state
    assert state is not None
    if not quiet:
        console = console or Console()
        for table in results_tables(state):
            console.print(table)
        for line in error_lines(state):  # each distinct error in full, once, with its trial ids
            console.print(line, soft_wrap=True, highlight=False, markup=False)
        if not state.finished:
            console.print(
                f"sweep stopped before the end; continue with: xtuner sweep resume {events.sweep_dir}"
            )
        if state.tracking_uri:
            for line in mlflow_hint(state):
                console.print(line, soft_wrap=True, highlight=False, markup=False)  # no wrapped addresses
        console.print(f"trial table: xtuner sweep status {state.name}")
    _log_report(events, state, quiet)
    return state


def mlflow_hint(state: SweepState) -> list[str]:
    """Where to look in MLflow: the command that starts the UI (for a sqlite store), the runs table in model-training
    mode and the sweep's parent run (`xtuner.sweep.run_meta.ui_links`)."""
    from xtuner.sweep.run_meta import ui_links

    uri = redact_text(state.tracking_uri or "")
    command, links = ui_links(uri, state.experiment_id, state.parent_run_id)
    lines = [f"MLflow: {command}" if command else f"MLflow: {uri}"]
    if links:  # each address on its own line, within 100 columns for the default UI address
        lines.append("  the runs table (model-training mode), then this sweep's parent run:")
        lines += [f"  {link}" for link in links]
    return lines


def _log_report(events: SweepEvents, state: SweepState, quiet: bool) -> None:
    """A finished, fully tracked sweep logs its report (`xtuner report`: plots, HTML, tables) into its parent run;
    a failure here is one warning line, never a failed sweep."""
    if not events.plan.spec.report:
        return
    if not (state.finished and events.tracking_uri and state.parent_run_id) or state.pending():
        return
    try:
        from xtuner.analysis.report import log_sweep_report

        log_sweep_report(state.name, events.tracking_uri, events.plan.spec.experiment)
    except Exception as e:  # noqa: BLE001 - the report is an extra: the sweep's results are already in MLflow
        first = (str(e).strip().splitlines() or [""])[0][:200]
        print(redact_text(f"warning: the sweep's report was not logged to MLflow ({type(e).__name__}: {first}); "
                          f"make it with: xtuner report {state.name}"), file=sys.stderr, flush=True)  # fmt: skip
        return
    if not quiet:
        print(f"report (plots, report.html) logged under report/ of the sweep's parent run; tables: xtuner report "
              f"{state.name}")  # fmt: skip


def sweep_status(name_or_path: str, storage: str | None = None, console: Console | None = None) -> SweepState:
    sweep_dir = find_sweep_dir(name_or_path, storage)
    state = SweepState.load(join(sweep_dir, STATE_FILE))
    console = console or Console()
    console.print(status_table(state))
    for table in results_tables(state):
        console.print(table)
    for line in error_lines(state):
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    from xtuner.sweep.export import sweep_state

    where = sweep_state(state, sweep_dir)
    hint = f"; continue with: xtuner sweep resume {sweep_dir}" if where == "stopped" else ""
    parent = f"; MLflow parent run {state.parent_run_id}" if state.parent_run_id else ""
    console.print(f"sweep {state.name}: {where}{parent}{hint}", soft_wrap=True)
    return state
