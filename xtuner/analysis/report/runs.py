"""The runs a report reads: MLflow child runs of one or more sweeps (tag ``xtuner.sweep``), or of an experiment.

Each child run becomes a `Run`: its task, method (the sweep's arm name, tag ``xtuner.method``), model, seed, the
settings that make its configuration (its params without the seed and paths), its status and its metrics.

- **Status** is one of done, pruned, failed, running: the tag ``xtuner.status`` when the trial wrote it, else the
  sweep driver's ``xtuner.state`` (nonfinite and error count as failed), else MLflow's run status. Only done runs
  enter a number; the others are counted and shown as such, never averaged in.
- **Main metric keys**: ``test/<lang>/main`` (and ``best/dev/en/main``) where the trial logged them, else the task's
  main metric by name (``test/<lang>/<metric>``, ``best/dev/en/<metric>``), so runs written before the uniform keys
  read the same.
- **Evaluation split**: a run whose trial evaluated zero-shot on the dev sets (param ``eval_split: validation``, tag
  ``xtuner.eval_split``) reports its task as ``<task>[dev]`` (`DEV_LABEL`): a task of its own in every table, plot
  and average, never mixed with the test numbers of the same task or matched with published (test) numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from xtuner.errors import XtunerError, unknown_name

STATUSES = ("done", "pruned", "failed", "running")
FROM_STATE = {
    "done": "done",
    "pruned": "pruned",
    "nonfinite": "failed",
    "error": "failed",
    "running": "running",
}
FROM_MLFLOW = {"RUNNING": "running", "SCHEDULED": "running", "FINISHED": "done", "FAILED": "failed",
               "KILLED": "failed"}  # fmt: skip
NOT_AGGREGATE = ("avg", "gap", "others")
DEV_LABEL = "[dev]"  # appended to the task of runs scored on the dev sets (eval_split validation)
# params that never make two runs different configurations (the seed is what a configuration averages over)
NOT_CONFIG = {"seed", "trial_id", "weights_dir", "keep_weights", "output_dir", "cache_dir", "data_dir", "train_data",
              "validation_data", "test_data", "languages", "eval_batch_size", "representation_rows",
              "protocol_version", "protocol_overrides", "predictions", "predictions_dir"}  # fmt: skip


@dataclass
class Run:
    run_id: str
    sweep: str
    task: str
    method: str
    model: str
    seed: int | None
    status: str
    main_metric: str
    settings: dict[str, str]
    metrics: dict[str, float]
    parent_run_id: str | None = None
    trial_id: str = ""
    note: str = ""  # why it failed, where it was pruned
    dev_key: str = ""  # the en-dev metric whose history is the dev curve
    extra: dict[str, Any] = field(default_factory=dict)
    eval_split: str = "test"  # what its test/... metrics were scored on; "validation" -> task is <task>[dev]

    @property
    def config(self) -> str:
        """The configuration key: task, method, model and settings (seed left out)."""
        return json.dumps([self.task, self.method, self.model, self.settings], sort_keys=True)

    def score(self, lang: str) -> float | None:
        """The main metric of `lang` (or avg/others/gap), None when not logged."""
        for key in (f"test/{lang}/main", f"test/{lang}/{self.main_metric}"):
            v = self.metrics.get(key)
            if v is not None and math.isfinite(v):
                return v
        if lang in ("others", "gap"):
            return _derived(self, lang)
        return None

    @property
    def languages(self) -> list[str]:
        langs = set()
        for key in self.metrics:
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == "test" and parts[2] in ("main", self.main_metric) \
                    and parts[1] not in NOT_AGGREGATE:  # fmt: skip
                langs.add(parts[1])
        return sorted(langs, key=lambda x: (x != "en", x))

    @property
    def dev(self) -> float | None:
        """The English dev score the configuration is chosen on (the best one of the trial)."""
        for key in ("best/dev/en/main", f"best/dev/en/{self.main_metric}"):
            if key in self.metrics and math.isfinite(self.metrics[key]):
                return self.metrics[key]
        return None


def _derived(run: Run, which: str) -> float | None:
    langs = run.languages
    others = [run.score(lang) for lang in langs if lang != "en"]
    if not others or any(v is None for v in others):
        return None
    mean_others = sum(others) / len(others)  # type: ignore[arg-type]
    if which == "others":
        return mean_others
    en = run.score("en")
    return None if en is None else en - mean_others


def task_label(task: str, eval_split: str) -> str:
    """The task as the report shows it: ``<task>[dev]`` when its numbers were scored on the dev sets."""
    return f"{task}{DEV_LABEL}" if eval_split == "validation" else task


def base_task(label: str) -> str:
    """The registered task name of a report label (``xnli[dev]`` -> ``xnli``)."""
    return label.removesuffix(DEV_LABEL)


def eval_split_of(tags: dict[str, str], params: dict[str, str]) -> str:
    """``test`` or ``validation``: the tag ``xtuner.eval_split`` the sweep writes, else the trial's param (runs
    written before either are test runs; a value that is neither, e.g. masked by a redaction, is not trusted)."""
    for value in (tags.get("xtuner.eval_split"), params.get("eval_split")):
        if value in ("test", "validation"):
            return str(value)
    return "test"


def status_of(tags: dict[str, str], mlflow_status: str) -> str:
    if tags.get("xtuner.status") in STATUSES:
        return tags["xtuner.status"]
    if tags.get("xtuner.state") in FROM_STATE:
        return FROM_STATE[tags["xtuner.state"]]
    return FROM_MLFLOW.get(mlflow_status, "running")


def main_metric_of(task: str, metrics: dict[str, float], params: dict[str, str]) -> str:
    """The task's main metric name (from the registry; else the one its ``best/dev/en/...`` key names)."""
    from xtuner.tasks import get_task

    try:
        return get_task(task).main_metric
    except XtunerError:
        pass
    names = {k.split("/")[-1] for k in metrics if k.startswith("best/dev/en/") and not k.endswith("/main")}
    return names.pop() if len(names) == 1 else params.get("main_metric", "main")


def to_run(r: Any) -> Run:
    tags, params = r.data.tags, r.data.params
    task = tags.get("xtuner.task") or params.get("task", "?")
    method = tags.get("xtuner.method") or params.get("method", "?")
    metrics = dict(r.data.metrics)
    settings = {  # paths (*_dir: predictions, weights, intermediate results) differ per trial or machine
        k: v for k, v in params.items()
        if k not in NOT_CONFIG and not k.endswith("_dir") and k not in ("task", "method", "model")
    }  # fmt: skip
    seed = params.get("seed")
    status = status_of(tags, r.info.status)
    note = ""
    if status == "failed":
        note = (tags.get("xtuner.error") or tags.get("xtuner.state") or r.info.status).splitlines()[0][:120]
    elif status == "pruned" and tags.get("xtuner.pruned_at_epoch"):
        note = f"pruned at epoch {tags['xtuner.pruned_at_epoch']}"
    main = main_metric_of(task, metrics, params)
    dev_key = "dev/en/main" if "dev/en/main" in metrics else f"dev/en/{main}"
    split = eval_split_of(tags, params)
    return Run(r.info.run_id, tags.get("xtuner.sweep", ""), task_label(task, split), method,
               params.get("model", "?"), int(seed) if seed not in (None, "") and str(seed).lstrip("-").isdigit() else None, status, main,
               settings, metrics, tags.get("mlflow.parentRunId"), tags.get("xtuner.trial_id", ""), note, dev_key,
               eval_split=split)  # fmt: skip


@dataclass
class Selection:
    """What the report reads: its runs and, per sweep, the parent run (where the report is logged)."""

    runs: list[Run]
    parents: dict[str, str]  # sweep -> parent run id
    tracking_uri: str
    sweeps: list[str]
    experiment: str | None = None


def _quote(value: str) -> str:
    if "'" in value:
        raise XtunerError(f"name {value!r}: a quote is not allowed in a sweep or experiment name")
    return value


def load(client: Any, sweeps: list[str], experiment: str | None, tracking_uri: str) -> Selection:
    """The child runs of `sweeps` (in any experiment, or in `experiment` when given), or of every sweep in
    `experiment` when no sweep is named. Unknown names are one error naming them (with a did-you-mean)."""
    if not sweeps and not experiment:
        raise XtunerError("xtuner report: name at least one sweep, or --experiment NAME")
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            names = [e.name for e in client.search_experiments()]
            raise unknown_name("experiment", experiment, names, where=f"at {tracking_uri}")
        exp_ids = [exp.experiment_id]
    else:
        exp_ids = [e.experiment_id for e in client.search_experiments()]
    parents_found = _search(client, exp_ids, "tags.`xtuner.kind` = 'sweep'") if exp_ids else []
    known = {p.data.tags.get("xtuner.sweep", ""): p for p in parents_found}
    if not sweeps:
        sweeps = sorted(s for s in known if s)
        if not sweeps:
            raise XtunerError(f"experiment {experiment!r} at {tracking_uri} holds no xtuner sweep")
    missing = [s for s in sweeps if s not in known]
    if missing:
        where = f"in experiment {experiment!r} at {tracking_uri}" if experiment else f"at {tracking_uri}"
        raise unknown_name("sweep", missing[0], [s for s in known if s], where=where)
    runs: list[Run] = []
    for sweep in sweeps:
        found = _search(client, exp_ids, f"tags.`xtuner.sweep` = '{_quote(sweep)}'")
        runs += [to_run(r) for r in found if r.data.tags.get("mlflow.parentRunId")]
    parents = {s: known[s].info.run_id for s in sweeps}
    runs.sort(key=lambda r: (r.task, r.method, r.sweep, r.seed if r.seed is not None else -1, r.trial_id))
    return Selection(runs, parents, tracking_uri, list(sweeps), experiment)


def _search(client: Any, exp_ids: list[str], filter_string: str) -> list:
    out, token = [], None
    while True:
        page = client.search_runs(exp_ids, filter_string=filter_string, max_results=1000, page_token=token)
        out += list(page)
        token = getattr(page, "token", None)
        if not token:
            return out


def default_tracking_uri(uri: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the sweeps' default (``sqlite:///mlflow.db``)."""
    import os

    return uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
