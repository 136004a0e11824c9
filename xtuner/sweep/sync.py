"""`xtuner sweep sync`: backfill MLflow from the sweep state file, e.g. after the tracking server was unreachable
in the middle of a sweep (the driver warns once and keeps every result in ``xtuner_sweep.json``).

Idempotent by comparing with what MLflow already holds, never by trusting flags: a run id of the state that the
target server does not know (another server, a deleted run) is replaced by a new run, and a child run created but
not recorded is found again by its ``xtuner.trial_id`` tag under the parent. On each run only what is missing is
written: params absent from the run, dev-curve points whose step is not in the metric's history, final metrics
absent from the run, tags that differ, artifacts not listed, the terminal status. A second sync therefore writes
nothing. The state file is saved after each run, with the target URI and the (new) run ids.

Limit: the state keeps the dev curve of the task's main metric only (``dev/en/<main>`` and ``dev/en/main`` per
epoch); other dev metrics are backfilled as their final ``best/dev/...`` values. The training loss (``train/loss``)
is kept per logging step and backfilled whole; per-example predictions are uploaded from the sweep's
``predictions/<trial>/`` folder while it exists. Trials that evaluate every ``eval_interval`` steps
are stepped by epoch here (the state does not keep their optimizer steps).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from xtuner.cluster.redact import redact_text
from xtuner.errors import XtunerError
from xtuner.sweep.run_meta import RUN_STATUS, STATUS, child_params, display_value
from xtuner.sweep.state import FINISHED, STATE_FILE, SweepState, TrialRecord, find_sweep_dir, join
from xtuner.sweep.tracking import MlflowWriter, per_language_csv, redact


@dataclass
class SyncReport:
    """What one sync wrote (all zero when MLflow was already complete)."""

    runs_created: list[str] = field(default_factory=list)  # "parent" and trial ids
    params: int = 0
    metrics: int = 0
    tags: int = 0
    artifacts: int = 0
    terminated: int = 0

    @property
    def changes(self) -> int:
        return (
            len(self.runs_created) + self.params + self.metrics + self.tags + self.artifacts + self.terminated
        )

    def summary(self) -> str:
        if not self.changes:
            return "MLflow already complete; nothing written"
        return (
            f"created {len(self.runs_created)} runs; wrote {self.params} params, {self.metrics} metric values, "
            f"{self.tags} tags, {self.artifacts} artifacts; closed {self.terminated} runs"
        )


def sync_sweep(
    name_or_path: str, *, storage: str | None = None, tracking_uri: str | None = None
) -> SyncReport:
    """Write to MLflow (`tracking_uri`, default the sweep's own) everything of the sweep it lacks."""
    from xtuner.sweep.checks import check_tracking
    from xtuner.sweep.lock import DriverLock
    from xtuner.sweep.runner import tracking_uri_for
    from xtuner.sweep.tracker import short_http_timeouts

    sweep_dir = find_sweep_dir(name_or_path, storage)
    with DriverLock(sweep_dir, "sweep sync"):  # not while a driver runs: its own writer backfills
        path = join(sweep_dir, STATE_FILE)
        state = SweepState.load(path)
        uri = tracking_uri_for(state, tracking_uri)
        if not uri:
            raise XtunerError(
                f"sweep {state.name!r} has no tracking URI (tracking disabled); pass --tracking-uri"
            )
        check_tracking(uri)
        short_http_timeouts()
        return _sync(state, path, sweep_dir, uri)


def _sync(state: SweepState, path: str, sweep_dir: str, uri: str) -> SyncReport:
    from xtuner.sweep.report import best_configs, summary_markdown

    experiment = (state.spec.get("tracking") or {}).get("experiment") or f"xtuner-{state.name}"
    syncer = Syncer(MlflowWriter(uri, experiment), state, sweep_dir)
    state.tracking_uri = uri
    try:
        syncer.parent()
        state.save(path)
        for rec in state.trials.values():
            syncer.child(rec)
            state.save(path)
        if state.finished:
            syncer.close_parent(best_configs(state), summary_markdown(state))
            state.save(path)
    except XtunerError:
        raise
    except Exception as e:  # noqa: BLE001 - the server failing again is the user's setup; progress is saved
        state.save(path)
        raise XtunerError(f"MLflow tracking at {uri}: {type(e).__name__}: {e} (run sync again)") from None
    return syncer.report


class Syncer:
    def __init__(self, writer: MlflowWriter, state: SweepState, sweep_dir: str) -> None:
        self.w, self.client, self.state, self.sweep_dir = writer, writer.client, state, sweep_dir
        self.report = SyncReport()

    # ------------------------------------------------------------------------------------------ runs
    def _existing(self, run_id: str | None):
        """The run, or None when this server does not know it (or it was deleted)."""
        from mlflow.exceptions import MlflowException

        if not run_id:
            return None
        try:
            run = self.client.get_run(run_id)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        return None if run.info.lifecycle_stage == "deleted" else run

    def parent(self) -> None:
        state = self.state
        run = self._existing(state.parent_run_id)
        if run is None:
            state.parent_run_id, state.parent_tracked = None, False
            self.w.open_parent(state, state.spec, self.sweep_dir)  # creates experiment, run, params, spec
            self.report.runs_created.append("parent")
            return
        state.experiment_id = run.info.experiment_id
        self._tags(
            run, {"xtuner.sweep": state.name, "xtuner.kind": "sweep", "xtuner.storage": self.sweep_dir}
        )
        self._artifact(run, "sweep_spec.json", lambda n: self.w.log_dict(run.info.run_id, state.spec, n))

    def child(self, rec: TrialRecord) -> None:
        run = self._existing(rec.run_id) or self._find_child(rec.trial_id)
        if run is None:
            rec.run_id, rec.tracked = None, False
            self.w.open_child(self.state, rec)
            self.report.runs_created.append(rec.trial_id)
            run = self.client.get_run(rec.run_id)
        rec.run_id = run.info.run_id
        self._params(run, child_params(rec))
        tags = {"mlflow.parentRunId": self.state.parent_run_id, "xtuner.trial_id": rec.trial_id,
                "xtuner.sweep": self.state.name, "xtuner.group": rec.group, "xtuner.task": rec.task,
                "xtuner.method": rec.method, "xtuner.state": rec.state, "xtuner.status": STATUS[rec.state]}  # fmt: skip
        if rec.state == "pruned" and rec.dev_curve:
            tags["xtuner.pruned_at_epoch"] = f"{rec.dev_curve[-1][0]:g}"
        if rec.error:
            tags["xtuner.error"] = rec.error[:4000]
        self._tags(run, tags)
        self._dev_curve(run, rec)
        self._train_loss(run, rec)
        if rec.state not in FINISHED:
            return  # still running (a killed driver): no final values yet
        final = {f"best/{k}" if k.startswith("dev/") else k: v for k, v in rec.final.items()}
        self._metrics(run, final)
        table = per_language_csv(rec.final)
        if table:
            self._artifact(run, "per_language.csv", lambda n: self.w.log_text(run.info.run_id, table, n))
        if rec.predictions:
            self._predictions(run, rec.predictions)
        self._terminate(run, RUN_STATUS[rec.state])
        rec.tracked = True

    def close_parent(self, best: list[dict[str, Any]], summary_md: str) -> None:
        state = self.state
        run = self.client.get_run(state.parent_run_id)
        self._artifact(run, "best_configs.json", lambda n: self.w.log_dict(run.info.run_id, best, n))
        self._artifact(run, "summary.md", lambda n: self.w.log_text(run.info.run_id, summary_md, n))
        self._tags(
            run,
            {**{f"xtuner.trials.{k}": str(v) for k, v in state.counts().items()}, "xtuner.status": "done"},
        )
        metrics = {}
        for row in best:
            for key in ("dev_en", "test_en", "test_others", "gap"):
                if row.get(key) is not None:
                    metrics[f"best/{row['task']}/{row['method']}/{key}"] = float(row[key])
        self._metrics(run, metrics)
        self._terminate(run, "FINISHED")
        state.parent_tracked = True

    def _find_child(self, trial_id: str):
        """A child run of this sweep's parent created for `trial_id` but whose id never reached the state."""
        if not self.state.parent_run_id or not self.state.experiment_id:
            return None
        found = self.client.search_runs(
            [self.state.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.state.parent_run_id}' "
            f"and tags.xtuner.trial_id = '{trial_id}'",
            max_results=1,
        )
        return found[0] if found else None

    # ------------------------------------------------------------------------------------------ pieces
    def _params(self, run, params: dict[str, Any]) -> None:
        have = run.data.params
        missing = {k: v for k, v in redact(params).items() if k not in have}
        if missing:
            self.w._log_params(run.info.run_id, missing)
            self.report.params += len(missing)

    def _tags(self, run, tags: dict[str, str | None]) -> None:
        have = run.data.tags
        todo = {k: v for k, v in tags.items() if v is not None and have.get(k) != redact_text(v)}
        if todo:
            self.w._set_tags(run.info.run_id, todo)
            self.report.tags += len(todo)

    def _metrics(self, run, metrics: dict[str, float]) -> None:
        todo = {k: v for k, v in metrics.items() if k not in run.data.metrics}
        if todo:
            self.w._log_metrics(run.info.run_id, todo, step=0)
            self.report.metrics += len(todo)

    def _dev_curve(self, run, rec: TrialRecord) -> None:
        from mlflow.entities import Metric

        if not rec.dev_curve:
            return
        keys = (f"dev/en/{rec.main_metric}", "dev/en/main")
        have = {k: {h.step for h in self.client.get_metric_history(run.info.run_id, k)} for k in keys}
        have_epoch = {h.step for h in self.client.get_metric_history(run.info.run_id, "epoch")}
        now = int(time.time() * 1000)
        items = []
        for epoch, value in rec.dev_curve:
            step = int(round(epoch))
            items += [Metric(k, display_value(k, value), now, step) for k in keys if step not in have[k]]
            if step not in have_epoch:
                items.append(Metric("epoch", float(epoch), now, step))
        if items:
            self.client.log_batch(run.info.run_id, metrics=items)
            self.report.metrics += len(items)

    def _train_loss(self, run, rec: TrialRecord) -> None:
        have = {h.step for h in self.client.get_metric_history(run.info.run_id, "train/loss")}
        todo = [p for p in rec.train_loss if int(p[0]) not in have]
        if todo:
            self.w.log_losses(rec, todo)
            self.report.metrics += len(todo)

    def _predictions(self, run, location: str) -> None:
        from xtuner.sweep.tracking import PREDICTIONS

        listed = {f.path for f in self.client.list_artifacts(run.info.run_id, PREDICTIONS)}
        if f"{PREDICTIONS}/meta.json" in listed:
            return
        try:
            self.w.log_predictions(run.info.run_id, location)
        except (FileNotFoundError, OSError):
            return  # the folder is gone (storage cleaned up): nothing to backfill
        self.report.artifacts += 1

    def _artifact(self, run, name: str, write) -> None:
        if name in {f.path for f in self.client.list_artifacts(run.info.run_id)}:
            return
        write(name)
        self.report.artifacts += 1

    def _terminate(self, run, status: str) -> None:
        if run.info.status != status or run.info.end_time is None:
            self.client.set_terminated(run.info.run_id, status)
            self.report.terminated += 1
