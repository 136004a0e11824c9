"""MLflow writing for a sweep, done by the driver alone (workers need no MLflow access). No Ray import here.

One parent run per sweep (tags ``xtuner.sweep``, the spec as ``sweep_spec.json``, at the end the best
configuration per task and method) and one child run per trial (tag ``mlflow.parentRunId``, ``xtuner.trial_id``,
``xtuner.state``, ``xtuner.status``, ``xtuner.eval_split`` = test | validation, what the ``test/...`` metrics were
scored on). Run names, the resolved params, provenance tags, MLflow run status and UI links come from
`xtuner.sweep.run_meta`. ``dev/en/<metric>`` and ``dev/en/main`` are stepped per epoch (or per optimizer step
when the trial evaluates every ``eval_interval`` steps), ``train/loss`` per optimizer step (`log_losses`), the
final ``test/<lang>/<metric>``, ``test/avg|others|gap/<metric>`` (and the same with ``main``) and
``best/dev/en/<metric>`` are logged once, with ``per_language.csv`` and the trial's per-example predictions under
``predictions/`` (`log_predictions`, from the folder the worker wrote) (and
``analysis/representations/<lang>/<metric>`` when the spec's ``representations`` is on; the tag ``xtuner.weights``
names the trial's kept weights). Run ids live in the sweep state file, so a resumed sweep reuses its runs. A run
written completely is marked in the state (``tracked``); what MLflow lacks is backfilled by `xtuner.sweep.sync`.
``--overwrite`` deletes the earlier sweep's runs first (`replace_runs`).

Everything written passes through `xtuner.cluster.redact` (params, tag values, text and dict artifacts: `log_text`,
`log_dict`). During a sweep these calls run on the writer thread of `xtuner.sweep.tracker`, never on Tune's loop.
"""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

from xtuner.cluster.redact import redact as redact_value
from xtuner.cluster.redact import redact_text
from xtuner.sweep.run_meta import (
    EXPERIMENT_KIND,
    RUN_STATUS,
    STATUS,
    as_written,
    child_params,
    display_value,
    provenance_tags,
    run_name,
)
from xtuner.sweep.state import SweepState, TrialRecord

PREDICTIONS = "predictions"  # a child run's folder of <lang>.parquet + meta.json (xtuner.metrics.examples)


# Tags whose values identify or classify a run (names the report and `sync` search by, states, a closed list of
# values): never passed through the substring masking of registered secrets, which would turn the tag
# ``xtuner.eval_split: test`` into ``***`` when a password is "test". None of them holds user free text that could
# carry a secret; the free-text ones (the command line, the storage URI) are masked.
STRUCTURAL_TAGS = frozenset({"mlflow.parentRunId", "mlflow.runName", "xtuner.sweep", "xtuner.kind", "xtuner.status",
                             "xtuner.state", "xtuner.trial_id", "xtuner.task", "xtuner.method", "xtuner.eval_split",
                             "xtuner.group"})  # fmt: skip


def redact_tags(tags: dict[str, Any]) -> dict[str, str]:
    from xtuner.cluster.redact import redact_text

    return {k: str(v) if k in STRUCTURAL_TAGS else redact_text(str(v)) for k, v in tags.items()}


def redact(params: dict[str, Any]) -> dict[str, str]:
    """Params as MLflow strings, secret-looking keys (token, password, secret, key, ...), URL passwords and registered
    secrets masked (`xtuner.cluster.redact`'s rules: whole words, so ``tokenizer`` stays visible); numbers and
    closed-list values as they are (`xtuner.trial.config.unmaskable_settings`)."""
    from xtuner.cluster.redact import redact_params, redact_text
    from xtuner.trial.config import unmaskable_settings

    kept = unmaskable_settings(params)
    out = {k: str(v) for k, v in kept.items()}
    for k, v in redact_params({k: v for k, v in params.items() if k not in kept}).items():
        out[k] = redact_text(json.dumps(v) if isinstance(v, list | dict) else str(v))[:6000]
    return out


class MlflowWriter:
    def __init__(self, uri: str, experiment: str) -> None:
        import logging
        import os

        os.environ.setdefault(
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"
        )  # no "View run" line per trial
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.uri, self.experiment = uri, experiment
        self.client = MlflowClient(tracking_uri=uri)
        self.replaced = 0  # runs of an earlier sweep of this name deleted by --overwrite

    # ------------------------------------------------------------------------------------------ parent run
    def open_parent(self, state: SweepState, spec_dict: dict[str, Any], storage_dir: str, *,
                    replace: bool = False) -> None:  # fmt: skip
        """Create the experiment and the parent run, or reopen the ones in `state` (resume). `replace`
        (``--overwrite``): first delete the earlier runs of this sweep folder (`replace_runs`)."""
        if state.parent_run_id:
            self.client.update_run(state.parent_run_id, status="RUNNING")
            self._set_tags(
                state.parent_run_id, {"xtuner.resumed": str(int(time.time())), "xtuner.status": "running"}
            )
            return
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            exp_id = self.client.create_experiment(
                self.experiment, artifact_location=self._artifact_location(), tags=EXPERIMENT_KIND
            )
        else:
            exp_id = exp.experiment_id
            if exp.tags.get("mlflow.experimentKind") is None:  # made by an older xtuner, or by hand
                for k, v in EXPERIMENT_KIND.items():
                    self.client.set_experiment_tag(exp_id, k, v)
            if replace:
                self.replaced = replace_runs(self.client, exp_id, state.name, str(storage_dir))
        tags = {"xtuner.sweep": state.name, "xtuner.kind": "sweep", "xtuner.storage": str(storage_dir),
                "mlflow.runName": state.name, "xtuner.status": "running", **provenance_tags()}  # fmt: skip
        run = self.client.create_run(exp_id, tags=redact_tags(tags), run_name=state.name)
        state.experiment_id, state.parent_run_id = exp_id, run.info.run_id
        top = {
            k: spec_dict[k] for k in ("search", "num_samples", "epochs", "seeds", "max_concurrent", "storage")
        }
        top.update(tasks=sorted(spec_dict["tasks"]), methods=sorted(spec_dict["methods"]),
                   models=spec_dict.get("models") or [spec_dict.get("model")],
                   scheduler=spec_dict["scheduler"]["type"])  # fmt: skip
        self._log_params(run.info.run_id, {k: as_written(v) for k, v in top.items()})
        self.log_dict(run.info.run_id, spec_dict, "sweep_spec.json")

    def _artifact_location(self) -> str | None:
        """Next to a sqlite database (not relative to the current folder); servers choose their own."""
        from xtuner.sweep.checks import sqlite_path

        if self.uri.startswith("sqlite:"):
            db = sqlite_path(self.uri)
            if db is not None:
                return (db.parent / "mlartifacts").as_uri()
        return None

    def close_parent(self, state: SweepState, best: list[dict[str, Any]], summary_md: str) -> None:
        run_id = state.parent_run_id
        assert run_id is not None
        self.log_dict(run_id, best, "best_configs.json")
        self.log_text(run_id, summary_md, "summary.md")
        counts = state.counts()
        self._set_tags(
            run_id, {**{f"xtuner.trials.{k}": str(v) for k, v in counts.items()}, "xtuner.status": "done"}
        )
        metrics = {}
        for row in best:
            for key in ("dev_en", "test_en", "test_others", "gap"):
                if row.get(key) is not None:
                    metrics[f"best/{row['task']}/{row['method']}/{key}"] = float(row[key])
        self._log_metrics(run_id, metrics, step=0)
        self.client.set_terminated(run_id, "FINISHED")
        state.parent_tracked = True

    # ------------------------------------------------------------------------------------------ child runs
    def open_child(self, state: SweepState, rec: TrialRecord) -> None:
        if rec.run_id:  # resumed trial: same run
            self.client.update_run(rec.run_id, status="RUNNING")
            return
        tags = {"mlflow.parentRunId": state.parent_run_id, "xtuner.trial_id": rec.trial_id,
                "xtuner.sweep": state.name, "xtuner.state": "running", "xtuner.group": rec.group,
                "xtuner.task": rec.task, "xtuner.method": rec.method, "xtuner.status": "running",
                "xtuner.eval_split": str(rec.params.get("eval_split", "test")), **provenance_tags()}  # fmt: skip
        tags = redact_tags(tags)
        name = run_name(rec, with_model=len(state.spec.get("models") or []) > 1)
        run = self.client.create_run(state.experiment_id, tags=tags, run_name=name)
        rec.run_id = run.info.run_id
        self._log_params(rec.run_id, child_params(rec))

    def log_dev(self, rec: TrialRecord, result: dict[str, Any], step: int) -> None:
        metrics = {k: v for k, v in result.items() if k.startswith("dev/")}
        metrics["epoch"] = result.get("epoch", 0.0)
        self._log_metrics(rec.run_id, metrics, step=step)

    def log_losses(self, rec: TrialRecord, points: list[list[float]]) -> None:
        """``train/loss`` at each optimizer step of `points` ([step, loss])."""
        from mlflow.entities import Metric

        assert rec.run_id is not None
        now = int(time.time() * 1000)
        items = [Metric("train/loss", float(v), now, int(s)) for s, v in points if _number(v)]
        for i in range(0, len(items), 500):
            self.client.log_batch(rec.run_id, metrics=items[i : i + 500])

    def log_predictions(self, run_id: str, location: str) -> None:
        """The trial's per-example predictions folder (local or object store) as the run's ``predictions/``."""
        import tempfile
        from pathlib import Path

        from xtuner.trial.predictions import local_copy

        with tempfile.TemporaryDirectory(prefix="xtuner-predictions-") as tmp:
            folder = local_copy(location, Path(tmp) / "predictions")
            self.client.log_artifacts(run_id, str(folder), artifact_path=PREDICTIONS)

    def finish_child(self, rec: TrialRecord) -> None:
        run_id = rec.run_id
        assert run_id is not None
        final = {}
        for k, v in rec.final.items():
            final[f"best/{k}" if k.startswith("dev/") else k] = v
        self._log_metrics(run_id, final, step=0)
        table = per_language_csv(rec.final)
        if table:
            self.log_text(run_id, table, "per_language.csv")
        tags = {"xtuner.state": rec.state, "xtuner.status": STATUS[rec.state]}
        if rec.state == "pruned" and rec.dev_curve:
            tags["xtuner.pruned_at_epoch"] = f"{rec.dev_curve[-1][0]:g}"
        if rec.error:
            tags["xtuner.error"] = rec.error[:4000]
        if rec.failures:
            tags["xtuner.failures"] = str(rec.failures)
        if rec.weights:
            tags["xtuner.weights"] = rec.weights
        if rec.intermediate_key:
            tags["xtuner.intermediate.key"] = rec.intermediate_key
        if rec.predictions:
            self.log_predictions(run_id, rec.predictions)
        self._set_tags(run_id, tags)
        self.client.set_terminated(run_id, RUN_STATUS[rec.state])
        rec.tracked = True

    def tag_child(self, rec: TrialRecord, tags: dict[str, str]) -> None:
        if rec.run_id:
            self._set_tags(rec.run_id, tags)

    # ------------------------------------------------------------------------------------------ helpers
    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, redact_text(text), artifact_file)

    def log_dict(self, run_id: str, data: Any, artifact_file: str) -> None:
        self.client.log_dict(run_id, redact_value(data), artifact_file)

    def _set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in sorted(redact_tags(tags).items())])

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in sorted(redact(params).items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def _log_metrics(self, run_id: str | None, metrics: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        assert run_id is not None
        now = int(time.time() * 1000)
        items = [Metric(k, display_value(k, v), now, step) for k, v in sorted(metrics.items()) if _number(v)]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i : i + 500])


def replace_runs(client, experiment_id: str, sweep: str, storage_dir: str) -> int:
    """``--overwrite``: delete (MLflow's soft delete: the runs leave the runs table and every search, and
    ``mlflow gc`` removes them for good; until then the UI's "deleted" filter shows them and
    ``MlflowClient().restore_run(id)`` brings one back) the parent runs of sweep `sweep` in `storage_dir` and their
    child runs, so that an experiment never holds two sweeps of one name. Returns how many runs were deleted."""
    parents = client.search_runs([experiment_id], max_results=1000, filter_string=(
        f"tags.`xtuner.sweep` = '{sweep}' and tags.`xtuner.kind` = 'sweep'"))  # fmt: skip
    parents = [r for r in parents if r.data.tags.get("xtuner.storage") == storage_dir]
    deleted = 0
    for parent in parents:
        pid = parent.info.run_id
        children = client.search_runs([experiment_id], max_results=50000,
                                      filter_string=f"tags.`mlflow.parentRunId` = '{pid}'")  # fmt: skip
        for run in [*children, parent]:
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")
            client.set_tag(run.info.run_id, "xtuner.overwritten", str(int(time.time())))
            client.delete_run(run.info.run_id)
            deleted += 1
    return deleted


def per_language_csv(final: dict[str, float]) -> str:
    """``lang,<metric>,...`` rows from the flat ``test/<lang>/<metric>`` keys (avg, others and gap rows last)."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in final.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "test":
            rows.setdefault(parts[1], {})[parts[2]] = value
    if not rows:
        return ""
    metrics = sorted({m for r in rows.values() for m in r} - {"main"})  # "main" repeats the main metric
    summary = ("avg", "others", "gap")
    order = sorted(k for k in rows if k not in summary) + [k for k in summary if k in rows]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["lang", *metrics])
    for lang in order:
        writer.writerow([lang, *(f"{rows[lang][m]:.4f}" if m in rows[lang] else "" for m in metrics)])
    return buf.getvalue()


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
