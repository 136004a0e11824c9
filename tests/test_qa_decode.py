"""QA n-best span decoding (`qa_postprocess`) on hand-made offsets/logits, against a brute-force reference of
the utils_qa formulation, and end to end through a real fast tokenizer with a non-ASCII context."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from xtuner.data.postprocess import qa_postprocess, qa_predictions_in_order, qa_references
from xtuner.data.preprocess import tokenize_split
from xtuner.data.toy_tokenizer import build_toy_tokenizer
from xtuner.errors import XtunerError
from xtuner.metrics import squad_v1
from xtuner.tasks.base import HeadType, Task
from xtuner.tasks.schemas import QA_FEATURES

CTX = "Der Zürichsee liegt östlich — 東京 ist groß."  # non-ASCII, CJK, a dash: offsets are code points
# hand-made tokenisation of CTX (token -> char span); the question tokens and specials have None
WORD_SPANS = [(0, 3), (4, 13), (14, 19), (20, 27), (28, 29), (30, 32), (33, 36), (37, 41), (41, 42)]
OFFSETS = [None, None, None, None] + [list(s) for s in WORD_SPANS] + [None]  # <s> q q </s></s>... ctx </s>
N = len(OFFSETS)


def features(rows: list[tuple[str, list]]) -> datasets.Dataset:
    """Eval features as preprocess stores them (arrow, None offsets), from (example_id, offsets) rows."""
    return datasets.Dataset.from_dict(
        {"example_id": [r[0] for r in rows], "offset_mapping": [r[1] for r in rows]},
        features=datasets.Features(
            {"example_id": datasets.Value("string"),
             "offset_mapping": datasets.List(datasets.List(datasets.Value("int32")))}
        ),
    )  # fmt: skip


def examples(ids: list[str], contexts: list[str]) -> dict[str, list[str]]:
    return {"id": ids, "context": contexts}


def peaked(n: int, start: dict[int, float], end: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    s, e = np.zeros(n), np.zeros(n)
    for i, v in start.items():
        s[i] = v
    for i, v in end.items():
        e[i] = v
    return s, e


def test_picks_the_best_span_in_original_characters():
    s, e = peaked(N, {5: 4.0, 9: 9.0}, {5: 3.0, 10: 8.0})  # best: tokens 9..10 = "東京 ist"
    out = qa_postprocess(examples(["a"], [CTX]), features([("a", OFFSETS)]), [s], [e], n_best=20,
                         max_answer_length=30)  # fmt: skip
    assert out == {"a": "東京 ist"}
    s, e = peaked(N, {5: 4.0}, {5: 3.0})
    out = qa_postprocess(examples(["a"], [CTX]), features([("a", OFFSETS)]), [s], [e], n_best=20,
                         max_answer_length=30)  # fmt: skip
    assert out == {"a": "Zürichsee"}


def test_non_context_tokens_and_padding_are_ignored():
    # the largest logits sit on CLS, a question token, the final </s> and on padding past the feature
    s, e = peaked(N + 6, {0: 99.0, 2: 50.0, N - 1: 60.0, N + 2: 80.0, 6: 1.0},
                  {0: 99.0, 3: 50.0, N - 1: 60.0, N + 3: 80.0, 7: 1.0})  # fmt: skip
    out = qa_postprocess(examples(["a"], [CTX]), features([("a", OFFSETS)]), [s], [e], n_best=20,
                         max_answer_length=30)  # fmt: skip
    assert out["a"] == "liegt östlich"


def test_respects_max_answer_length_and_end_after_start():
    # tokens: 4 Der, 5 Zürichsee, 6 liegt, 7 östlich, 8 —, 9 東京, 10 ist, 11 groß, 12 "."
    feats = features([("a", OFFSETS)])
    # pairs by score: (4,9)=20 is 6 tokens long, (4,7)=19.9 is 4, (8,9)=19 is 2
    s, e = peaked(N, {4: 10.0, 8: 9.0}, {9: 10.0, 7: 9.9})
    for max_len, expected in [
        (2, "— 東京"),
        (4, "Der Zürichsee liegt östlich"),
        (6, "Der Zürichsee liegt östlich — 東京"),
    ]:
        out = qa_postprocess(examples(["a"], [CTX]), feats, [s], [e], n_best=20, max_answer_length=max_len)
        assert out["a"] == expected
    # (9,7)=19.9 ends before it starts and must lose to (9,9)=18.9 when (4,7)=20 is too long
    s, e = peaked(N, {4: 10.0, 9: 9.9}, {7: 10.0, 9: 9.0})
    out = qa_postprocess(examples(["a"], [CTX]), feats, [s], [e], n_best=20, max_answer_length=3)
    assert out["a"] == "東京"


def test_n_best_limits_the_candidates_like_utils_qa():
    # starts ranked: CLS (invalid), question token (invalid), token 7; with n_best=2 no valid start remains
    s, e = peaked(N, {0: 9.0, 1: 8.0, 7: 7.0}, {7: 5.0})
    feats = features([("a", OFFSETS)])
    assert qa_postprocess(examples(["a"], [CTX]), feats, [s], [e], n_best=2, max_answer_length=30) == {
        "a": ""
    }
    assert qa_postprocess(examples(["a"], [CTX]), feats, [s], [e], n_best=3, max_answer_length=30) == {
        "a": "östlich"
    }


def test_best_span_across_windows_and_examples():
    # example "a" has two windows over the same context; window 1 has the higher score
    w0 = OFFSETS
    w1 = [None, None, None, None] + [list(x) for x in WORD_SPANS[4:]] + [None]
    s0, e0 = peaked(len(w0), {5: 3.0}, {6: 3.0})  # "Zürichsee liegt", 6.0
    s1, e1 = peaked(len(w1), {5: 4.0}, {5: 4.0})  # window-1 token 5 = "東京", 8.0
    ctx_b = "Paris liegt an der Seine."
    wb = [None, None, [0, 5], [6, 11], [12, 14], [15, 18], [19, 24], [24, 25], None]
    sb, eb = peaked(len(wb), {2: 1.0}, {2: 1.0})
    feats = features([("a", w0), ("b", wb), ("a", w1)])  # windows of different examples interleaved
    exs = examples(["a", "b"], [CTX, ctx_b])
    out = qa_postprocess(exs, feats, [s0, sb, s1], [e0, eb, e1], n_best=20, max_answer_length=30)
    assert out == {"a": "東京", "b": "Paris"}
    # equal best scores in both windows: the first window wins (stable order)
    s1, e1 = peaked(len(w1), {5: 3.0}, {5: 3.0})
    out = qa_postprocess(exs, feats, [s0, sb, s1], [e0, eb, e1], n_best=20, max_answer_length=30)
    assert out["a"] == "Zürichsee liegt"
    assert qa_predictions_in_order(out, ["b", "a"]) == ["Paris", "Zürichsee liegt"]
    with pytest.raises(XtunerError, match="no prediction"):
        qa_predictions_in_order(out, ["c"])


def brute_force(
    context: str, windows: list[list], starts: list[np.ndarray], ends: list[np.ndarray], max_len: int
):
    """Reference: the best valid (start, end) over ALL token pairs of all windows (utils_qa with n_best = all)."""
    best = None
    for offs, s, e in zip(windows, starts, ends, strict=True):
        for i in range(len(offs)):
            for j in range(i, min(len(offs), i + max_len)):
                if offs[i] is None or offs[j] is None:
                    continue
                if best is None or s[i] + e[j] > best[0]:
                    best = (s[i] + e[j], offs[i][0], offs[j][1])
    return "" if best is None else context[best[1] : best[2]]


def test_matches_brute_force_reference_on_random_logits():
    rng = np.random.default_rng(7)
    w1 = [None, None, None, None] + [list(x) for x in WORD_SPANS[3:]] + [None]
    for trial in range(40):
        starts = [rng.normal(size=N + 2), rng.normal(size=len(w1))]
        ends = [rng.normal(size=N + 2), rng.normal(size=len(w1))]
        max_len = int(rng.integers(1, 6))
        out = qa_postprocess(examples(["a"], [CTX]), features([("a", OFFSETS), ("a", w1)]), starts, ends,
                             n_best=N + 2, max_answer_length=max_len)  # fmt: skip
        assert out["a"] == brute_force(CTX, [OFFSETS, w1], starts, ends, max_len), trial


def test_mismatched_logits_are_an_error():
    with pytest.raises(XtunerError, match="2/1 logit rows for 1 features"):
        qa_postprocess(examples(["a"], [CTX]), features([("a", OFFSETS)]), [np.zeros(N)] * 2, [np.zeros(N)],
                       n_best=5, max_answer_length=5)  # fmt: skip


def test_end_to_end_through_the_tokenizer(tmp_path):
    """Logits peaked at the gold token positions of the right window decode to the exact original answer,
    characters the toy vocabulary lacks (<unk>: 東, 京, ß) included."""
    tok = build_toy_tokenizer(
        ["der", "die", "see", "liegt", "ist", "wo", "in", "the", "city"], tmp_path, pieces=["ü", "ö"]
    )
    context = (
        ("der see liegt in der city . " * 6)
        + "Zürichsee liegt östlich , 東京 ist groß . "
        + "die city ist groß . " * 6
    )
    answers = ["東京 ist groß", "Zürichsee", "östlich"]
    raw = datasets.Dataset.from_dict(
        {"id": ["x", "y", "z"], "title": ["t"] * 3, "context": [context] * 3,
         "question": ["wo ist die city ?", "wo ?", "wo liegt der see ?"],
         "answers": [{"text": [a], "answer_start": [context.index(a)]} for a in answers]},
        features=QA_FEATURES,
    )  # fmt: skip
    task = Task(name="t-qa", head=HeadType.EXTRACTIVE_QA, languages=("en",), features=QA_FEATURES,
                loader=lambda *a: raw, metric=squad_v1, main_metric="f1", inputs=("question", "context"),
                label_column=None)  # fmt: skip
    feats = tokenize_split(task, raw, tok, max_length=32, doc_stride=10, train=False)
    assert len(feats) > 6
    rng = np.random.default_rng(0)
    starts, ends = [], []
    for f in feats:
        s, e = rng.normal(size=f["length"]), rng.normal(size=f["length"])
        if f["start_positions"] > 0:  # windows that contain the answer: make it the clear best
            s[f["start_positions"]] += 20
            e[f["end_positions"]] += 20
        starts.append(s)
        ends.append(e)
    out = qa_postprocess(raw, feats, starts, ends, n_best=20, max_answer_length=30)
    assert out == dict(zip(["x", "y", "z"], answers, strict=True))
    ids, refs = qa_references(raw)
    assert squad_v1(qa_predictions_in_order(out, ids), refs)["exact_match"] == 100.0
