"""Model outputs -> what the metrics score: word-level tag strings, and QA answer strings.

Token classification: the prediction of word w is the prediction at its first sub-word (`word_starts[w]`,
written by `preprocess`). A sentence split into windows is put back together from its features (`sentence`,
ordered by `word_offset`), so the result has one tag per word of every raw sentence. A word with no token in
its feature (a word the tokenizer maps to nothing) gets the FALLBACK tag of :func:`fallback_tag` ("O" for IOB
tag sets, else "X", the UPOS "other" tag, else the first label), so every gold word is scored and sentence lengths
always match the gold.

QA: the n-best span search of transformers' utils_qa.py `postprocess_qa_predictions` (SQuAD v1, no null
answer): for every window of an example, take the `n_best` highest start and end logits, keep pairs whose
tokens are both context tokens (offset not None), end >= start and length <= max_answer_length tokens; score =
start + end logit; across all windows of the example the highest score wins (ties: first window, then
higher-ranked start, then higher-ranked end, as a stable sort of utils_qa's candidate order gives). The answer
is `context[offsets[start][0]:offsets[end][1]]` of the ORIGINAL context string. When no valid span exists the
answer is "" (utils_qa returns the string "empty"; both score 0 against a real gold answer).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xtuner.errors import XtunerError
from xtuner.tasks.base import HeadType, Task


def fallback_tag(label_names: Sequence[str]) -> str:
    """The tag predicted for words without a token (see module doc)."""
    for name in ("O", "X"):
        if name in label_names:
            return name
    return label_names[0]


def token_predictions_to_tags(
    task: Task,
    features: Any,
    logits_or_pred_ids: Sequence[Any],
    label_names: Sequence[str] | None = None,
) -> list[list[str]]:
    """Word-level tag strings per raw sentence (in the order of the split). `logits_or_pred_ids[i]` is feature
    i's (L, C) logits or (L,) ids, trimmed or padded (positions past a feature's length are never read)."""
    if task.head != HeadType.TOKEN_CLASSIFICATION:
        raise XtunerError(f"task {task.name!r} is not a token-classification task (head {task.head})")
    names = list(label_names if label_names is not None else task.labels)
    if not names:
        raise XtunerError(f"task {task.name!r}: no label names to map predictions to")
    default = fallback_tag(names)
    word_starts = features["word_starts"]
    if len(word_starts) != len(logits_or_pred_ids):
        raise XtunerError(f"{len(logits_or_pred_ids)} predictions for {len(word_starts)} features")
    windows = []
    for starts, pred in zip(word_starts, logits_or_pred_ids, strict=True):
        pred = np.asarray(pred)
        ids = pred.argmax(-1) if pred.ndim == 2 else pred
        windows.append([names[int(ids[p])] if p >= 0 else default for p in starts])
    return join_windows(windows, features["sentence"], features["word_offset"])


def join_windows(windows: Sequence[list[str]], sentence: Sequence[int], offset: Sequence[int]) -> list[list[str]]:
    """Per-window tags -> per-sentence tags: windows of one sentence in word order; every sentence 0..N-1 must
    be there and its windows must cover its words once, back to back (as `preprocess.split_windows` makes them)."""
    by_sentence: dict[int, list[tuple[int, list[str]]]] = defaultdict(list)
    for tags, s, off in zip(windows, sentence, offset, strict=True):
        by_sentence[int(s)].append((int(off), tags))
    n = max(by_sentence, default=-1) + 1
    if sorted(by_sentence) != list(range(n)):
        raise XtunerError(f"token features cover sentences {sorted(by_sentence)[:5]}...: expected 0..{n - 1}")
    out = []
    for s in range(n):
        words: list[str] = []
        for off, tags in sorted(by_sentence[s], key=lambda x: x[0]):
            if off != len(words):
                raise XtunerError(f"sentence {s}: a window starts at word {off}, expected {len(words)}")
            words.extend(tags)
        out.append(words)
    return out


def reference_tags(task: Task, examples: Any, label_names: Sequence[str] | None = None) -> list[list[str]]:
    """Gold word-level tag strings of a raw (hub-schema) token-classification split."""
    names = list(label_names if label_names is not None else task.labels)
    return [[names[t] for t in tags] for tags in examples[task.label_column]]


def qa_references(examples: Any) -> tuple[list[str], list[list[str]]]:
    """(ids, gold answer strings per example) of a raw QA split, in dataset order."""
    return list(examples["id"]), [list(a["text"]) for a in examples["answers"]]


def qa_postprocess(
    examples: Any,
    features: Any,
    start_logits: Sequence[Any],
    end_logits: Sequence[Any],
    *,
    n_best: int,
    max_answer_length: int,
) -> dict[str, str]:
    """Answer text per example id (see module doc). `start_logits[i]`/`end_logits[i]` belong to feature i and
    may be trimmed to its length or padded (offsets decide which positions are context)."""
    n_feat = len(features["example_id"])
    if len(start_logits) != n_feat or len(end_logits) != n_feat:
        raise XtunerError(f"QA: {len(start_logits)}/{len(end_logits)} logit rows for {n_feat} features")
    by_example: dict[str, list[int]] = defaultdict(list)
    for i, ex_id in enumerate(features["example_id"]):
        by_example[ex_id].append(i)
    offsets_all = features["offset_mapping"]
    answers = {}
    for ex_id, context in zip(examples["id"], examples["context"], strict=True):
        candidates = []  # (score, start_char, end_char) in utils_qa's order
        for i in by_example.get(ex_id, []):
            candidates += _window_candidates(
                np.asarray(start_logits[i]),
                np.asarray(end_logits[i]),
                offsets_all[i],
                n_best,
                max_answer_length,
            )
        if not candidates:
            answers[ex_id] = ""
            continue
        best = sorted(candidates, key=lambda c: c[0], reverse=True)[0]  # stable: earliest among ties
        answers[ex_id] = context[best[1] : best[2]]
    return answers


def _window_candidates(
    start: np.ndarray,
    end: np.ndarray,
    offsets: Sequence[Sequence[int] | None],
    n_best: int,
    max_answer_length: int,
) -> list[tuple[float, int, int]]:
    n = len(offsets)  # positions beyond the feature (padding) are never candidates
    if len(start) < n or len(end) < n:
        raise XtunerError(f"QA: logits of length {len(start)}/{len(end)} for a feature of {n} tokens")
    start, end = start[:n], end[:n]
    out = []
    for s in np.argsort(start, kind="stable")[::-1][:n_best]:
        for e in np.argsort(end, kind="stable")[::-1][:n_best]:
            if not (_is_context(offsets[s]) and _is_context(offsets[e])):
                continue
            if e < s or e - s + 1 > max_answer_length:
                continue
            out.append((float(start[s] + end[e]), offsets[s][0], offsets[e][1]))
    return out


def _is_context(offset: Sequence[int] | None) -> bool:
    return offset is not None and len(offset) == 2


def qa_predictions_in_order(answers: Mapping[str, str], ids: Sequence[str]) -> list[str]:
    """Answer strings in the order of `ids` (for the metric, beside `qa_references`)."""
    missing = [i for i in ids if i not in answers]
    if missing:
        raise XtunerError(f"QA: no prediction for {len(missing)} example(s), e.g. {missing[0]!r}")
    return [answers[i] for i in ids]
