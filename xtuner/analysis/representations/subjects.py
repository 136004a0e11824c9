"""Which trained encoders an analysis reads: MLflow run ids, sweep names or kept-weights folders, plus the untuned
pretrained model as the baseline.

- a folder (or ``s3://``/``gs://`` URI) holding ``xtuner_weights.json``: one trial's kept weights; a local folder
  without it is searched two levels down (``<storage>/<sweep>/weights/<trial>/``);
- an MLflow run id: the run's kept weights, from its tag ``xtuner.weights`` (set by the sweep driver) or its param
  ``weights_dir``; a run without them is an error that says how to keep them;
- a sweep name: every trial run of the sweep (tag ``xtuner.sweep``) with kept weights, of the analysed task when
  one is given; runs without weights (fine-tuning under ``keep_weights: auto``) are listed and skipped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xtuner.errors import XtunerError
from xtuner.trial.weights import META

UNTUNED = "untuned"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Ref:
    """A kept-weights location and, when known, its MLflow run."""

    location: str
    run_id: str | None = None
    sweep: str | None = None
    trial_id: str | None = None


@dataclass
class Subject:
    """One encoder to analyse."""

    label: str
    method: str  # "untuned" for the baseline
    model_name: str  # the backbone (a trial's `model`)
    task: str | None  # the task it was trained on (None for the baseline)
    seed: int | None
    model: Any
    tokenizer: Any
    ref: Ref | None = None
    config: dict[str, Any] | None = None  # the trial's flat settings (kept weights), for grouping
    group: str = ""  # the configuration it belongs to: its method and what else differs from its method's others


# settings that never make two runs different configurations (seeds are what a group averages over)
NOT_CONFIG = ("seed", "weights_dir", "keep_weights", "representation_rows", "output_dir", "cache_dir", "data_dir",
              "train_data", "validation_data", "test_data", "languages", "eval_batch_size", "max_eval_examples")  # fmt: skip


def assign_groups(subjects: list[Subject]) -> None:
    """`group` = the method, plus the settings that differ between its runs (``finetune (lr=0.001)``), so a table
    averages seeds of one configuration, never two learning rates; the baseline is its own group."""
    by_method: dict[str, list[Subject]] = {}
    for s in subjects:
        if s.method == UNTUNED or s.config is None:
            s.group = s.label if s.method == UNTUNED else s.method
        else:
            by_method.setdefault(s.method, []).append(s)
    for method, group in by_method.items():
        flat = [_settings(s.config or {}) for s in group]
        keys = sorted({k for f in flat for k in f})
        varying = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
        for s, f in zip(group, flat, strict=True):
            s.group = method + (" (" + ", ".join(f"{k}={f.get(k)}" for k in varying) + ")" if varying else "")


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in config.items() if k not in NOT_CONFIG and k != "method_settings"}
    out.update(config.get("method_settings") or {})
    return out


def default_tracking_uri(uri: str | None = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def _has_meta(location: str) -> bool:
    from xtuner.sweep.state import exists, join

    return exists(join(location, META))


def _local_refs(folder: Path) -> list[Ref]:
    if (folder / META).is_file():
        return [Ref(str(folder))]
    found = sorted({p.parent for p in [*folder.glob(f"*/{META}"), *folder.glob(f"*/*/{META}")]})
    if not found:
        raise XtunerError(f"{folder} holds no kept weights ({META} here or up to two levels down)")
    return [Ref(str(p), trial_id=p.name) for p in found]


def resolve(sources: list[str], tracking_uri: str | None = None, task: str | None = None) -> tuple[list[Ref], list[str]]:
    """(kept-weights refs, notes about runs skipped) for every source, in order, without repeats; a sweep's runs
    of another task than `task` (when given) are left out."""
    refs: list[Ref] = []
    notes: list[str] = []
    client = None
    for source in sources:
        if "://" in source and not source.startswith(("http://", "https://")):
            if not _has_meta(source):
                raise XtunerError(f"{source} holds no kept weights (no {META})")
            refs.append(Ref(source))
            continue
        path = Path(source).expanduser()
        if path.is_dir():
            refs += _local_refs(path)
            continue
        from xtuner.sweep.checks import check_server, tracker_errors

        uri = default_tracking_uri(tracking_uri)
        with tracker_errors(uri):  # MLflow refusing the URI: one error line
            if client is None:
                from mlflow.tracking import MlflowClient

                check_server(uri)  # a dead server: one error line, not minutes of MLflow's retries
                client = MlflowClient(tracking_uri=uri)
            found, skipped = _mlflow_refs(client, source, uri, task)
        refs += found
        notes += skipped
    unique = list({r.location: r for r in refs}.values())
    return unique, notes


def run_weights(run) -> str | None:
    return run.data.tags.get("xtuner.weights") or run.data.params.get("weights_dir") or None


def _mlflow_refs(client, source: str, uri: str, task: str | None = None) -> tuple[list[Ref], list[str]]:
    if RUN_ID.match(source):
        try:
            run = client.get_run(source)
        except Exception:  # noqa: BLE001 - MLflow raises its own types for a missing run
            run = None
        if run is not None:
            location = run_weights(run)
            if not location or not _has_meta(location):
                raise XtunerError(f"run {source} has no kept weights{f' at {location}' if location else ''}: a "
                                  "trial keeps its best weights with the sweep key keep_weights (auto: prompt methods "
                                  "and LoRA; all: fine-tuning too) or xtuner trial --keep-weights DIR")  # fmt: skip
            return [Ref(location, run.info.run_id, run.data.tags.get("xtuner.sweep"),
                        run.data.tags.get("xtuner.trial_id"))], []  # fmt: skip
    runs = _sweep_runs(client, source)
    if not runs:
        raise XtunerError(f"{source!r} is not a folder, a kept-weights URI, a run id or a sweep name known to MLflow "
                          f"at {uri}")  # fmt: skip
    if task:
        runs = [r for r in runs if r.data.tags.get("xtuner.task", task) == task]
        if not runs:
            raise XtunerError(f"sweep {source!r} has no trial of task {task!r}")
    refs, skipped = [], []
    for run in runs:
        location = run_weights(run)
        name = f"{run.data.tags.get('xtuner.method', '?')} trial {run.data.tags.get('xtuner.trial_id', run.info.run_id)}"
        if location and _has_meta(location):
            refs.append(Ref(location, run.info.run_id, source, run.data.tags.get("xtuner.trial_id")))
        else:
            skipped.append(f"{name}: no kept weights (keep_weights: all keeps fine-tuned ones too)")
    if not refs:
        raise XtunerError(f"sweep {source!r}: none of its {len(runs)} trial runs has kept weights; " + "; ".join(skipped[:3]))
    return refs, skipped


def _sweep_runs(client, sweep: str) -> list:
    exps = [e.experiment_id for e in client.search_experiments()]
    if not exps:
        return []
    runs = client.search_runs(exps, filter_string=f"tags.`xtuner.sweep` = '{sweep}'", max_results=5000)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    return sorted(children, key=lambda r: r.data.tags.get("xtuner.trial_id", r.info.run_id))


def device():
    """Where the analyses run their forward passes: the GPU when there is one."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_subject(ref: Ref) -> Subject:
    from xtuner.trial.weights import load_kept

    kept = load_kept(ref.location)
    kept.built.model.to(device())
    cfg = kept.meta.get("config", {})
    seed = cfg.get("seed")
    trial = f" {ref.trial_id}" if ref.trial_id else ""
    label = f"{kept.method} seed {seed}{trial}" if seed is not None else f"{kept.method}{trial}"
    return Subject(label, kept.method, str(kept.meta["model"]), str(kept.meta["task"]), seed, kept.built.model,
                   kept.tokenizer, ref, cfg)  # fmt: skip


def untuned(model_name: str) -> Subject:
    """The pretrained model itself, unchanged (its bare encoder)."""
    from transformers import AutoTokenizer

    from xtuner.methods import build_model
    from xtuner.models import resolve_model
    from xtuner.tasks import HeadType

    path = resolve_model(model_name)
    built = build_model(path, HeadType.RETRIEVAL, 0, "finetune", {})
    built.model.to(device()).eval()
    return Subject(UNTUNED, UNTUNED, model_name, None, None, built.model, AutoTokenizer.from_pretrained(path))
