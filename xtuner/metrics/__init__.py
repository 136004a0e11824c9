"""Metric functions, one signature for every task: ``metric(predictions, references, lang) -> dict[str, float]``.

Conventions per head type:
- sequence classification: predictions and references are label ids (ints);
- token classification: lists of tag strings per sentence (first sub-word of each word), as seqeval expects;
- extractive QA: predictions are answer strings, references are lists of gold answer strings.

Scores are percentages (0-100), as the XTREME tables report them.
"""

from __future__ import annotations

from xtuner.metrics.classification import accuracy, seqeval_f1
from xtuner.metrics.mlqa import mlqa
from xtuner.metrics.squad import squad_v1

__all__ = ["accuracy", "mlqa", "seqeval_f1", "squad_v1"]
