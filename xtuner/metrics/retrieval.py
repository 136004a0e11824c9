"""The retrieval metrics of XTREME's ``evaluate.py``: Tatoeba accuracy and BUCC 2018 F1.

As in XTREME, prediction (nearest-neighbour search, margin-based bitext mining with its threshold) is separate from
scoring; the prediction side is ``xtuner.retrieval.search``. These two functions score what it predicts:

- ``retrieval_accuracy``: predictions and references are the index of the retrieved / the gold sentence (Tatoeba:
  for each English sentence, the position of the other language's sentence retrieved for it);
- ``bucc_f1``: predictions and references are ``(source id, English id)`` pairs; precision, recall and F1 of the
  predicted pair SET against the gold pair set (XTREME ``evaluate.py: bucc_f1``, duplicates counted once).
"""

from __future__ import annotations

from collections.abc import Sequence

from xtuner.errors import XtunerError


def retrieval_accuracy(predictions: Sequence[int], references: Sequence[int], lang: str = "") -> dict[str, float]:
    if len(predictions) != len(references):
        raise XtunerError(f"metric: {len(predictions)} predictions but {len(references)} references")
    if not references:
        raise XtunerError("metric: no sentences to score")
    correct = sum(int(p) == int(r) for p, r in zip(predictions, references, strict=True))
    return {"accuracy": 100.0 * correct / len(references)}


def bucc_f1(
    predictions: Sequence[tuple[str, str]], references: Sequence[tuple[str, str]], lang: str = ""
) -> dict[str, float]:
    gold = {tuple(p) for p in references}
    if not gold:
        raise XtunerError("metric: no gold sentence pairs to score")
    predicted = {tuple(p) for p in predictions}
    correct = len(gold & predicted)
    if correct == 0:
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    precision, recall = correct / len(predicted), correct / len(gold)
    f1 = 2 * precision * recall / (precision + recall)
    return {"f1": 100.0 * f1, "precision": 100.0 * precision, "recall": 100.0 * recall}
