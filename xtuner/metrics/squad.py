"""SQuAD v1.1 exact match and F1, as the official evaluate-v1.1.py computes them (XQuAD, TyDiQA-GoldP)."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

from xtuner.errors import XtunerError


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official v1.1)."""
    s = s.lower()
    exclude = set(string.punctuation)
    s = "".join(ch for ch in s if ch not in exclude)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    """Bag-of-tokens F1 of the official SQuAD (and MLQA) scripts."""
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def qa_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]], normalize: Callable[[str], str]
) -> dict[str, float]:
    """EM and F1 (percentages, max over the gold answers of each example) after `normalize`; score = their mean."""
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
        p = normalize(pred)
        normalized = [normalize(g) for g in golds]
        em += max(float(p == g) for g in normalized)
        f1 += max(token_f1(p.split(), g.split()) for g in normalized)
    n = len(references)
    em, f1 = 100.0 * em / n, 100.0 * f1 / n
    return {"exact_match": em, "f1": f1, "score": (em + f1) / 2}


def squad_v1(
    predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str = ""
) -> dict[str, float]:
    return qa_scores(predictions, references, normalize_answer)
