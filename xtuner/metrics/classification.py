"""Accuracy (XNLI, PAWS-X) and seqeval span F1 (UD-POS, PAN-X), as XTREME computes them."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from xtuner.errors import XtunerError


def _check_lengths(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise XtunerError(f"metric: {len(predictions)} predictions but {len(references)} references")
    if not references:
        raise XtunerError("metric: no examples to score")


def accuracy(predictions: Sequence[int], references: Sequence[int], lang: str = "") -> dict[str, float]:
    _check_lengths(predictions, references)
    correct = sum(int(p) == int(r) for p, r in zip(predictions, references, strict=True))
    return {"accuracy": 100.0 * correct / len(references)}


def seqeval_f1(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]], lang: str = ""
) -> dict[str, float]:
    """seqeval (default, conlleval-compatible mode) F1/P/R plus token accuracy.

    XTREME scores UD-POS with seqeval over the raw UPOS tags (no B-/I- prefixes): seqeval then treats every tag
    as a chunk type and merges runs of the same tag into one chunk. We reproduce that on purpose, and report
    token accuracy beside it.
    """
    _check_lengths(predictions, references)
    for i, (p, r) in enumerate(zip(predictions, references, strict=True)):
        if len(p) != len(r):
            raise XtunerError(f"metric: sentence {i} has {len(p)} predicted tags but {len(r)} gold tags")
    preds = [list(p) for p in predictions]
    refs = [list(r) for r in references]
    n_tok = sum(len(r) for r in refs)
    tok_correct = sum(a == b for p, r in zip(preds, refs, strict=True) for a, b in zip(p, r, strict=True))
    from seqeval.metrics import f1_score, precision_score, recall_score  # (sklearn: loaded when scoring)

    with warnings.catch_warnings():  # seqeval warns "NOUN seems not to be NE tag" for raw UPOS tags
        warnings.simplefilter("ignore", UserWarning)
        f1 = float(f1_score(refs, preds))
        precision = float(precision_score(refs, preds))
        recall = float(recall_score(refs, preds))
    return {
        "f1": 100.0 * f1,
        "precision": 100.0 * precision,
        "recall": 100.0 * recall,
        "token_accuracy": 100.0 * tok_correct / max(n_tok, 1),
    }
