"""Scoring one split: bucketed prediction -> head-specific post-processing -> the task's metric.

The same function scores English dev during training (Trainer.evaluate is routed here) and every language's
test split at the end, so dev and test numbers come from one code path.
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


def score_split(
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
) -> dict[str, float]:
    out = predict(
        model, split.features, pad_collate(tokenizer), batch_size, bucketed=bucketed, use_bf16=use_bf16
    )
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
    return {k: float(v) for k, v in task.metric(preds, refs, split.lang).items()}
