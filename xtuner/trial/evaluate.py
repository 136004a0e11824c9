"""Scoring one split: bucketed prediction -> head-specific post-processing -> the task's metric.

The same function scores English dev during training (Trainer.evaluate is routed here) and every language's
test split at the end, so dev and test numbers come from one code path. `predict_split` keeps the predictions
themselves (the trial writes them per example, `xtuner.trial.predictions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np

from xtuner.data.batching import pad_collate, predict
from xtuner.data.postprocess import qa_postprocess, qa_references, reference_tags, token_predictions_to_tags
from xtuner.tasks.base import HeadType, Task


@dataclass
class EvalSplit:
    """A raw split and its tokenized features (bookkeeping columns included)."""

    lang: str
    raw: datasets.Dataset
    features: datasets.Dataset


@dataclass
class Predictions:
    """One split's predictions as the task's metric scores them: ``ids`` (the raw split's ``id`` column, else the
    row number), ``preds`` and ``refs`` (labels, word-level tag lists, or answer strings and gold answers)."""

    ids: list[Any]
    preds: list[Any]
    refs: list[Any]


def predict_split(
    task: Task,
    model: Any,
    split: EvalSplit,
    tokenizer: Any,
    *,
    batch_size: int,
    n_best: int,
    max_answer_length: int,
    use_bf16: bool = False,
    bucketed: bool = True,
) -> Predictions:
    out = predict(
        model, split.features, pad_collate(tokenizer), batch_size, bucketed=bucketed, use_bf16=use_bf16
    )
    ids = list(split.raw["id"]) if "id" in split.raw.column_names else list(range(len(split.raw)))
    if task.head == HeadType.SEQUENCE_CLASSIFICATION:
        preds = np.asarray(out["logits"]).argmax(-1).tolist()
        refs = list(split.raw[task.label_column])
    elif task.head == HeadType.TOKEN_CLASSIFICATION:
        preds = token_predictions_to_tags(task, split.features, out["logits"])
        refs = reference_tags(task, split.raw)
    else:
        answers = qa_postprocess(
            split.raw, split.features, out["start_logits"], out["end_logits"],
            n_best=n_best, max_answer_length=max_answer_length,
        )  # fmt: skip
        ids, refs = qa_references(split.raw)
        preds = [answers.get(i, "") for i in ids]
    return Predictions(ids, preds, refs)


def metrics_of(task: Task, predictions: Predictions, lang: str) -> dict[str, float]:
    return {k: float(v) for k, v in task.metric(predictions.preds, predictions.refs, lang).items()}


def score_split(task: Task, model: Any, split: EvalSplit, tokenizer: Any, **kwargs: Any) -> dict[str, float]:
    """The task's metrics of one split (`predict_split`'s keyword arguments)."""
    return metrics_of(task, predict_split(task, model, split, tokenizer, **kwargs), split.lang)
