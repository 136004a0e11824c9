"""SQuAD v1.1 exact match and F1, as the official evaluate-v1.1.py computes them (XQuAD, TyDiQA-GoldP)."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from xtuner.errors import XtunerError


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official v1.1)."""
    s = s.lower()
    exclude = set(string.punctuation)
    s = "".join(ch for ch in s if ch not in exclude)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_one(prediction: str, ground_truth: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(ground_truth).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_one(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def squad_v1(
    predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str = ""
) -> dict[str, float]:
    if len(predictions) != len(references):
        raise XtunerError(f"metric: {len(predictions)} predictions but {len(references)} references")
    if not references:
        raise XtunerError("metric: no examples to score")
    em = f1 = 0.0
    for pred, golds in zip(predictions, references, strict=True):
        if not golds:
            raise XtunerError(
                "metric: a QA example has no gold answers; refusing to score against empty labels"
            )
        em += max(exact_one(pred, g) for g in golds)
        f1 += max(f1_one(pred, g) for g in golds)
    n = len(references)
    em, f1 = 100.0 * em / n, 100.0 * f1 / n
    return {"exact_match": em, "f1": f1, "score": (em + f1) / 2}
