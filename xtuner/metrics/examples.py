"""Per-example statistics of every main metric, so that any resample of test examples can be re-scored.

A paired bootstrap (xtuner report) compares two configurations on the same test examples: it draws example
indices with replacement and re-computes each side's main metric on the draw. That needs, per example, the
*sufficient statistics* of the metric rather than the metric itself, because F1 over entity spans is not a mean
of per-sentence F1s. One kind per metric:

- ``accuracy`` (XNLI, PAWS-X, Tatoeba, the synthetic classification tasks): ``correct`` in {0, 1};
  score = 100 * mean(correct).
- ``span_f1`` (PAN-X, UD-POS; seqeval's micro F1 over chunks, which never cross sentences): per sentence ``tp``,
  ``n_pred``, ``n_gold``; score = 100 * 2 * sum(tp) / (sum(n_pred) + sum(n_gold)).
- ``qa`` (XQuAD, MLQA, TyDiQA; F1 and EM are already means over questions): per question ``f1`` and ``em`` in
  [0, 1], computed by the task's own metric on that one example (so MLQA's language-specific normalisation
  holds); score = 100 * mean(f1).

`example_stats` gives the columns for one language's predictions, `score` re-computes the main metric from any
subset (`idx`), and `write_predictions` / `read_predictions` store one file per language
(``<folder>/<lang>.parquet``: ``id``, ``pred``, ``gold`` as text and the statistic columns) plus
``<folder>/meta.json`` (task, main metric, kind). A trial writes them under ``predictions/`` of its MLflow run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xtuner.errors import XtunerError

KINDS: dict[str, tuple[str, ...]] = {
    "accuracy": ("correct",),
    "span_f1": ("tp", "n_pred", "n_gold"),
    "qa": ("f1", "em"),
}
FORMAT_VERSION = 1


def kind_of(task: Any) -> str | None:
    """The statistic kind of a task's main metric, or None where a test set has no per-example form (BUCC's F1
    depends on a threshold chosen over all pairs)."""
    head = str(getattr(task.head, "value", task.head))
    main = task.main_metric
    if head == "extractive_qa":
        return "qa"
    if head == "token_classification" and main == "f1":
        return "span_f1"
    if main == "accuracy":
        return "accuracy"
    return None


def _entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    from seqeval.metrics.sequence_labeling import get_entities

    return set(get_entities(list(tags)))


def example_stats(
    task: Any, predictions: Sequence[Any], references: Sequence[Any], lang: str
) -> dict[str, np.ndarray]:
    """The per-example statistic columns of `kind_of(task)` (see the module doc)."""
    kind = kind_of(task)
    if kind is None:
        raise XtunerError(f"task {task.name!r}: its main metric {task.main_metric!r} has no per-example form")
    if len(predictions) != len(references):
        raise XtunerError(f"predictions: {len(predictions)} predictions but {len(references)} references")
    if kind == "accuracy":
        return {
            "correct": np.array(
                [int(p) == int(r) for p, r in zip(predictions, references, strict=True)], dtype=np.int8
            )
        }
    if kind == "span_f1":
        tp, n_pred, n_gold = [], [], []
        for p, r in zip(predictions, references, strict=True):
            pe, re_ = _entities(p), _entities(r)
            tp.append(len(pe & re_))
            n_pred.append(len(pe))
            n_gold.append(len(re_))
        return {"tp": np.array(tp, dtype=np.int32), "n_pred": np.array(n_pred, dtype=np.int32),
                "n_gold": np.array(n_gold, dtype=np.int32)}  # fmt: skip
    f1, em = [], []
    for p, r in zip(predictions, references, strict=True):
        m = task.metric([p], [r], lang)
        f1.append(m["f1"] / 100.0)
        em.append(m["exact_match"] / 100.0)
    return {"f1": np.array(f1, dtype=np.float64), "em": np.array(em, dtype=np.float64)}


def score(kind: str, stats: pd.DataFrame | dict[str, np.ndarray], idx: np.ndarray | None = None) -> float:
    """The main metric (0-100) of the examples `idx` (all when None; repeats count, as a bootstrap draw needs)."""
    if kind not in KINDS:
        raise XtunerError(f"unknown statistic kind {kind!r}; known: {', '.join(KINDS)}")

    def col(name: str) -> np.ndarray:
        values = np.asarray(stats[name], dtype=np.float64)
        return values if idx is None else values[idx]

    if kind == "accuracy":
        c = col("correct")
        return float(100.0 * c.mean()) if len(c) else float("nan")
    if kind == "span_f1":
        denom = col("n_pred").sum() + col("n_gold").sum()
        return float(100.0 * 2.0 * col("tp").sum() / denom) if denom else 0.0
    f = col("f1")
    return float(100.0 * f.mean()) if len(f) else float("nan")


def score_matrix(kind: str, stats: pd.DataFrame | dict[str, np.ndarray], draws: np.ndarray) -> np.ndarray:
    """`score` of every row of `draws` (shape [B, n], example indices), vectorised: one value per draw."""
    if kind not in KINDS:
        raise XtunerError(f"unknown statistic kind {kind!r}; known: {', '.join(KINDS)}")
    cols = {c: np.asarray(stats[c], dtype=np.float64) for c in KINDS[kind]}
    if kind == "accuracy":
        return 100.0 * cols["correct"][draws].mean(axis=1)
    if kind == "span_f1":
        denom = cols["n_pred"][draws].sum(axis=1) + cols["n_gold"][draws].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                denom > 0, 100.0 * 2.0 * cols["tp"][draws].sum(axis=1) / np.maximum(denom, 1), 0.0
            )
    return 100.0 * cols["f1"][draws].mean(axis=1)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return (
            " ".join(_text(v) for v in value)
            if all(not isinstance(v, list | tuple) for v in value)
            else json.dumps(value)
        )
    return str(value)


def write_predictions(folder: str | Path, task: Any, lang: str, ids: Sequence[Any], predictions: Sequence[Any],
                      references: Sequence[Any]) -> Path:  # fmt: skip
    """Write ``<folder>/<lang>.parquet`` (and ``meta.json`` once) for one language; returns the parquet path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kind = kind_of(task)
    stats = example_stats(task, predictions, references, lang)
    frame = pd.DataFrame({"id": [str(i) for i in ids], "pred": [_text(p) for p in predictions],
                          "gold": [_text(r) for r in references], **stats})  # fmt: skip
    if frame["id"].duplicated().any():
        raise XtunerError(f"predictions for {task.name}/{lang}: example ids are not unique")
    path = folder / f"{lang}.parquet"
    frame.to_parquet(path, index=False)
    meta = {"format": FORMAT_VERSION, "task": task.name, "main_metric": task.main_metric, "kind": kind}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return path


def read_predictions(folder: str | Path) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """(meta, {lang: frame}) of a folder written by `write_predictions`; clear errors for anything else."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise XtunerError(f"{folder}: no per-example predictions here (meta.json missing)")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as e:
        raise XtunerError(f"{meta_path}: not valid JSON ({e})") from None
    if meta.get("format") != FORMAT_VERSION or meta.get("kind") not in KINDS:
        raise XtunerError(
            f"{meta_path}: unknown predictions format {meta.get('format')!r} / kind {meta.get('kind')!r}"
        )
    frames = {p.stem: pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}
    for lang, frame in frames.items():
        missing = [c for c in ("id", *KINDS[meta["kind"]]) if c not in frame.columns]
        if missing:
            raise XtunerError(f"{folder / (lang + '.parquet')}: missing columns {missing}")
    return meta, frames
