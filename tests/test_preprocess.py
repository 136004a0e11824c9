"""Head-type preprocessing, word-level round trip and length-bucketed prediction, on a real XLM-R-style fast
tokenizer (built offline, saved and reloaded through AutoTokenizer) and hand-made hub-schema datasets."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from transformers import (
    XLMRobertaConfig,
    XLMRobertaForQuestionAnswering,
    XLMRobertaForSequenceClassification,
    XLMRobertaForTokenClassification,
)

from xtuner.data.batching import bucketed_batches, pad_collate, predict
from xtuner.data.postprocess import join_windows, reference_tags, token_predictions_to_tags
from xtuner.data.preprocess import (
    IGNORE_INDEX,
    model_columns,
    select_model_columns,
    split_windows,
    tokenize_split,
)
from xtuner.data.toy_tokenizer import build_toy_tokenizer
from xtuner.errors import XtunerError
from xtuner.metrics import accuracy, seqeval_f1, squad_v1
from xtuner.tasks.base import HeadType, Task
from xtuner.tasks.schemas import (
    NLI_LABELS,
    PANX_FEATURES,
    PANX_TAGS,
    QA_FEATURES,
    UDPOS_FEATURES,
    UPOS_TAGS,
    XNLI_FEATURES,
)

WORDS = [
    "the",
    "a",
    "quick",
    "brown",
    "fox",
    "dog",
    "jumps",
    "over",
    "lazy",
    "in",
    "is",
    "where",
    "who",
    "lives",
    "Berlin",
    "Paris",
    "river",
    "city",
]


def _no_loader(split: str, lang: str, ctx: object) -> datasets.Dataset:
    raise AssertionError("tests pass datasets directly")


def make_task(kind: str) -> Task:
    common = {"languages": ("en", "de"), "loader": _no_loader}
    if kind == "xnli":
        return Task(name="t-xnli", head=HeadType.SEQUENCE_CLASSIFICATION, features=XNLI_FEATURES,
                    metric=accuracy, main_metric="accuracy", inputs=("premise", "hypothesis"),
                    label_column="label", labels=NLI_LABELS, **common)  # fmt: skip
    if kind == "single":
        return Task(name="t-single", head=HeadType.SEQUENCE_CLASSIFICATION, features=XNLI_FEATURES,
                    metric=accuracy, main_metric="accuracy", inputs=("premise",),
                    label_column="label", labels=NLI_LABELS, **common)  # fmt: skip
    if kind == "panx":
        return Task(name="t-panx", head=HeadType.TOKEN_CLASSIFICATION, features=PANX_FEATURES,
                    metric=seqeval_f1, main_metric="f1", inputs=("tokens",), label_column="ner_tags",
                    labels=PANX_TAGS, **common)  # fmt: skip
    if kind == "udpos":
        return Task(name="t-udpos", head=HeadType.TOKEN_CLASSIFICATION, features=UDPOS_FEATURES,
                    metric=seqeval_f1, main_metric="f1", inputs=("tokens",), label_column="pos_tags",
                    labels=UPOS_TAGS, **common)  # fmt: skip
    return Task(name="t-qa", head=HeadType.EXTRACTIVE_QA, features=QA_FEATURES, metric=squad_v1,
                main_metric="f1", inputs=("question", "context"), label_column=None, **common)  # fmt: skip


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_toy_tokenizer(WORDS, tmp_path_factory.mktemp("tok"), pieces=["ish", "ing", "er", "ü"])


def panx_ds(sentences: list[list[str]], tags: list[list[str]]) -> datasets.Dataset:
    ids = [[PANX_TAGS.index(t) for t in row] for row in tags]
    langs = [["en"] * len(s) for s in sentences]
    return datasets.Dataset.from_dict(
        {"tokens": sentences, "ner_tags": ids, "langs": langs}, features=PANX_FEATURES
    )


# ------------------------------------------------------------------ sequence classification


def test_sentence_pair_and_single_sentence(tok):
    ds = datasets.Dataset.from_dict(
        {
            "premise": ["the quick fox", "the lazy dog " * 30],
            "hypothesis": ["a dog", "the fox"],
            "label": [2, 0],
        },
        features=XNLI_FEATURES,
    )
    pair = tokenize_split(make_task("xnli"), ds, tok, max_length=24, doc_stride=8, train=True)
    assert pair["labels"] == [2, 0]
    first = tok.convert_ids_to_tokens(pair[0]["input_ids"])
    assert first == ["<s>", "▁the", "▁quick", "▁fox", "</s>", "</s>", "▁a", "▁dog", "</s>"]
    assert pair[0]["length"] == len(pair[0]["input_ids"]) == sum(pair[0]["attention_mask"])
    # the long pair is truncated to max_length, and the hypothesis survives (longest_first truncation)
    second = tok.convert_ids_to_tokens(pair[1]["input_ids"])
    assert len(second) == 24 and second[-4:] == ["</s>", "▁the", "▁fox", "</s>"]

    single = tokenize_split(make_task("single"), ds, tok, max_length=24, doc_stride=8, train=False)
    assert tok.convert_ids_to_tokens(single[0]["input_ids"]) == ["<s>", "▁the", "▁quick", "▁fox", "</s>"]
    assert len(single[1]["input_ids"]) == 24
    assert sorted(single.column_names) == ["attention_mask", "input_ids", "labels", "length"]
    assert select_model_columns(make_task("single"), single, False).column_names == [
        "input_ids", "attention_mask", "labels"
    ]  # fmt: skip


def test_missing_column_is_a_clear_error(tok):
    ds = datasets.Dataset.from_dict({"premise": ["a"], "label": [0]})
    with pytest.raises(XtunerError, match="hypothesis"):
        tokenize_split(make_task("xnli"), ds, tok, max_length=16, doc_stride=4, train=True)


# ------------------------------------------------------------------ token classification


def test_first_subword_gets_the_label(tok):
    words = ["the", "brownish", "Zürich", "fox", "Paris"]
    tags = ["O", "B-ORG", "B-LOC", "O", "B-LOC"]
    feats = tokenize_split(
        make_task("panx"), panx_ds([words], [tags]), tok, max_length=64, doc_stride=8, train=True
    )
    row = feats[0]
    pieces = tok.convert_ids_to_tokens(row["input_ids"])
    starts, labels = row["word_starts"], row["labels"]
    assert len(starts) == len(words)
    # multi-piece words really are split: "brownish" -> ▁brown ish, "Zürich" -> ▁Z ü r i c h
    assert pieces[starts[1] : starts[2]] == ["▁brown", "ish"]
    assert starts[3] - starts[2] == 6
    for w, pos in enumerate(starts):
        assert labels[pos] == PANX_TAGS.index(tags[w])
        assert pieces[pos].startswith("▁")
    labelled = [i for i, lab in enumerate(labels) if lab != IGNORE_INDEX]
    assert labelled == starts  # specials and continuation pieces carry -100
    assert labels[0] == labels[-1] == IGNORE_INDEX


def test_round_trip_to_word_tags(tok):
    sents = [["the", "brownish", "fox", "in", "Berlin"], ["Zürich", "river", "is", "lazy"]]
    tags = [["O", "B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "I-LOC", "O", "O"]]
    task = make_task("panx")
    raw = panx_ds(sents, tags)
    feats = tokenize_split(task, raw, tok, max_length=64, doc_stride=8, train=False)
    rng = np.random.default_rng(0)
    logits = []
    for labels in feats["labels"]:
        lg = rng.normal(size=(len(labels), len(PANX_TAGS)))
        for pos, lab in enumerate(labels):
            if lab != IGNORE_INDEX:
                lg[pos, lab] += 50.0  # the first sub-word says the gold tag, other pieces say noise
        logits.append(lg)
    pred = token_predictions_to_tags(task, feats, logits, PANX_TAGS)
    assert pred == tags == reference_tags(task, raw)
    # predicted ids instead of logits, padded past each feature's length, give the same words
    ids = [np.concatenate([lg.argmax(-1), np.full(5, 6)]) for lg in logits]
    assert token_predictions_to_tags(task, feats, ids) == tags
    # a wrong continuation-piece prediction does not change the word's tag
    ids[0][feats[0]["word_starts"][1] + 1] = 0
    assert token_predictions_to_tags(task, feats, ids)[0] == tags[0]
    assert seqeval_f1(pred, tags)["f1"] == 100.0


def test_split_windows_fills_greedily_and_covers_every_word_once():
    # XTREME's rule (utils_preprocess.py): add words while they fit, a word that does not fit opens a new window
    assert split_windows([2, 1, 3, 1, 6, 1], 6) == [(0, 3), (3, 4), (4, 5), (5, 6)]
    assert split_windows([1, 9, 1], 4) == [(0, 1), (1, 2), (2, 3)]  # a word longer than a window: on its own
    assert split_windows([0, 2, 0], 2) == [(0, 3)]  # words without tokens take no room
    assert split_windows([], 6) == [(0, 0)]
    assert split_windows([3, 3], 6) == [(0, 2)]  # exactly full


def test_long_sentence_is_split_into_windows_and_every_word_is_scored_once(tok):
    words = ["Paris", "is", "a", "city", "in", "the", "river", "Berlin", "lives", "in", "Zürich"]
    tags = ["B-LOC", "O", "O", "O", "O", "O", "O", "B-LOC", "O", "O", "B-LOC"]
    short, short_tags = ["the", "fox"], ["O", "B-PER"]
    task = make_task("panx")
    raw = panx_ds([short, words], [short_tags, tags])
    feats = tokenize_split(task, raw, tok, max_length=8, doc_stride=8, train=False)
    budget = 8 - tok.num_special_tokens_to_add(pair=False)
    assert feats["sentence"][0] == 0 and feats["word_offset"][0] == 0 and len(feats) >= 3
    # the long sentence: consecutive windows of whole words, none over the limit, every word labelled once
    long_rows = [r for r in feats if r["sentence"] == 1]
    assert len(long_rows) >= 2 and all(len(r["input_ids"]) <= 8 for r in long_rows)
    covered = []
    for r in long_rows:
        assert r["word_offset"] == len(covered)
        covered += words[r["word_offset"] : r["word_offset"] + len(r["word_starts"])]
        labelled = [lab for lab in r["labels"] if lab != IGNORE_INDEX]
        assert len(labelled) == len(r["word_starts"]) and all(p >= 0 for p in r["word_starts"])
        assert sum(1 for t in r["input_ids"] if t not in tok.all_special_ids) <= budget
    assert covered == words
    # "Zürich" (6 pieces) did not fit after "in": it opens the last window instead of being cut
    assert long_rows[-1]["word_starts"] == [1] and len(long_rows[-1]["input_ids"]) == 8
    # gold tags at the first sub-words come back as exactly one tag per word of each sentence
    logits = [np.eye(len(PANX_TAGS))[[lab if lab != IGNORE_INDEX else 0 for lab in r["labels"]]] for r in feats]
    pred = token_predictions_to_tags(task, feats, logits)
    assert pred == [short_tags, tags] == reference_tags(task, raw)
    assert seqeval_f1(pred, [short_tags, tags])["f1"] == 100.0

    # UPOS has no "O": a word without tokens falls back to "X"; the windows are the same for POS
    pos_task = make_task("udpos")
    pos_raw = datasets.Dataset.from_dict(
        {"tokens": [words + [""]], "pos_tags": [[0] * (len(words) + 1)]}, features=UDPOS_FEATURES
    )
    pos_feats = tokenize_split(pos_task, pos_raw, tok, max_length=8, doc_stride=8, train=False)
    assert len(pos_feats) == len(long_rows)
    pos_pred = token_predictions_to_tags(pos_task, pos_feats, [np.zeros(8, dtype=int)] * len(pos_feats))
    assert pos_pred == [["ADJ"] * len(words) + ["X"]]


def test_windows_that_do_not_cover_their_sentence_are_an_error():
    with pytest.raises(XtunerError, match="starts at word 3, expected 2"):
        join_windows([["O", "O"], ["O"]], [0, 0], [0, 3])
    with pytest.raises(XtunerError, match=r"cover sentences \[0, 2\]"):
        join_windows([["O"], ["O"]], [0, 2], [0, 0])


def test_word_without_any_token_gets_the_fallback(tok):
    words, tags = ["the", "", "fox"], ["O", "B-PER", "B-LOC"]
    feats = tokenize_split(
        make_task("panx"), panx_ds([words], [tags]), tok, max_length=32, doc_stride=8, train=False
    )
    starts = feats[0]["word_starts"]
    assert starts[1] == -1 and starts[0] > 0 and starts[2] > starts[0]
    pred = token_predictions_to_tags(make_task("panx"), feats, [np.full(len(feats[0]["input_ids"]), 5)])
    assert pred == [["B-LOC", "O", "B-LOC"]]


def test_tag_count_mismatch_is_an_error(tok):
    ds = datasets.Dataset.from_dict(
        {"tokens": [["the", "fox"]], "ner_tags": [[0]], "langs": [["en", "en"]]}, features=PANX_FEATURES
    )
    with pytest.raises(XtunerError, match="2 words but 1 tags"):
        tokenize_split(make_task("panx"), ds, tok, max_length=32, doc_stride=8, train=True)


# ------------------------------------------------------------------ extractive QA


def qa_ds(context: str, question: str, answer: str | None, ex_id: str = "q1") -> datasets.Dataset:
    answers = (
        {"text": [answer], "answer_start": [context.index(answer)]}
        if answer
        else {"text": [], "answer_start": []}
    )
    return datasets.Dataset.from_dict(
        {"id": [ex_id], "title": ["t"], "context": [context], "question": [question], "answers": [answers]},
        features=QA_FEATURES,
    )


CONTEXT = (
    "the quick brown fox lives in Berlin . the lazy dog lives in Paris over the river . "
    "Zürich is a city where the brownish fox jumps . who lives in the city ? the dog is lazy ."
)


def test_qa_windows_put_every_answer_at_the_right_tokens(tok):
    """Every word of the context in turn starts a one-word and a two-word answer (so answers sit at window
    edges and cross them); one example per answer, all in one batch, so the window -> example mapping is
    exercised."""
    spans = CONTEXT.split(" ")
    word_start = [len(" ".join(spans[:w])) + (1 if w else 0) for w in range(len(spans))]
    starts = [word_start[w] for k in (1, 2) for w in range(len(spans) - k + 1)]
    answers = [" ".join(spans[w : w + k]) for k in (1, 2) for w in range(len(spans) - k + 1)]
    n = len(answers)
    raw = datasets.Dataset.from_dict(
        {"id": [f"q{i}" for i in range(n)], "title": ["t"] * n, "context": [CONTEXT] * n,
         "question": ["  where is the fox ?"] * n,
         "answers": [{"text": [a], "answer_start": [s]} for a, s in zip(answers, starts, strict=True)]},
        features=QA_FEATURES,
    )  # fmt: skip
    stride = 5
    feats = tokenize_split(make_task("qa"), raw, tok, max_length=20, doc_stride=stride, train=False)
    train = tokenize_split(make_task("qa"), raw, tok, max_length=20, doc_stride=stride, train=True)
    assert train["start_positions"] == feats["start_positions"]
    assert "offset_mapping" not in train.column_names and "example_id" not in train.column_names
    windows_per_example = len(feats) // n
    assert windows_per_example > 3 and len(feats) == n * windows_per_example
    hits = [0] * n
    prev_ctx = None
    for k, f in enumerate(feats):
        i = k // windows_per_example
        answer, start_char = answers[i], starts[i]
        offs = f["offset_mapping"]
        ctx = [j for j, o in enumerate(offs) if o is not None]
        assert len(f["input_ids"]) <= 20 and f["example_id"] == f"q{i}"
        assert all(o is None for o in offs[: ctx[0]]) and offs[-1] is None  # specials/question: not context
        window = (offs[ctx[0]][0], offs[ctx[-1]][1])
        inside = window[0] <= start_char and start_char + len(answer) <= window[1]
        s, e = f["start_positions"], f["end_positions"]
        if inside:
            hits[i] += 1
            assert ctx[0] <= s <= e <= ctx[-1]
            assert CONTEXT[offs[s][0] : offs[e][1]] == answer
            assert tok.decode(f["input_ids"][s : e + 1]).strip() == answer
        else:
            assert (s, e) == (0, 0)
        if k % windows_per_example:  # consecutive windows overlap by exactly doc_stride context tokens
            assert prev_ctx[-stride:] == [offs[j] for j in ctx[:stride]]
        prev_ctx = [offs[j] for j in ctx]
    # a span of k tokens is inside some window whenever k <= doc_stride + 1 (windows overlap by doc_stride)
    n_tokens = [len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers]
    assert all(h >= 1 for h, k in zip(hits, n_tokens, strict=True) if k <= stride + 1)
    assert max(hits) >= 2 and 0 in hits  # some answers lie in an overlap, a too-long one is in no window


def test_qa_without_answer_and_overlong_question(tok):
    feats = tokenize_split(
        make_task("qa"), qa_ds(CONTEXT, "who ?", None), tok, max_length=32, doc_stride=8, train=True
    )
    assert set(feats["start_positions"]) == {0} and set(feats["end_positions"]) == {0}
    long_q = "where is the quick brown fox " * 10
    feats = tokenize_split(make_task("qa"), qa_ds(CONTEXT, long_q, "Berlin"), tok, max_length=32, doc_stride=8,
                           train=False)  # fmt: skip
    assert all(len(ids) <= 32 for ids in feats["input_ids"])
    # the question was cut so that each window keeps doc_stride + 1 context tokens
    assert all(sum(o is not None for o in offs) == 9 for offs in feats["offset_mapping"][:-1])
    with pytest.raises(XtunerError, match="doc_stride=28"):
        tokenize_split(
            make_task("qa"), qa_ds(CONTEXT, "who", "Berlin"), tok, max_length=32, doc_stride=28, train=True
        )
    assert model_columns(make_task("qa"), True)[-2:] == ["start_positions", "end_positions"]


# ------------------------------------------------------------------ bucketed prediction


def test_bucketed_batches_plan():
    lengths = [5, 9, 5, 1, 9, 7]
    plan = bucketed_batches(lengths, 4)
    assert plan == [[1, 4, 5, 0], [2, 3]]
    assert sorted(i for b in plan for i in b) == list(range(6))
    assert bucketed_batches([], 3) == []


def tiny_model(cls, tok, **kw):
    torch.manual_seed(0)
    cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=80, pad_token_id=tok.pad_token_id,
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **kw)  # fmt: skip
    return cls(cfg).eval()


def varied_sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(n)]


def test_bucketed_predict_matches_naive_padded_predict(tok):
    task = make_task("xnli")
    prem, hyp = varied_sentences(37, 1), varied_sentences(37, 2)
    raw = datasets.Dataset.from_dict({"premise": prem, "hypothesis": hyp, "label": [i % 3 for i in range(37)]},
                                     features=XNLI_FEATURES)  # fmt: skip
    feats = tokenize_split(task, raw, tok, max_length=64, doc_stride=8, train=False)
    model = tiny_model(XLMRobertaForSequenceClassification, tok, num_labels=3)
    bucketed = predict(model, feats, pad_collate(tok), 8, bucketed=True, device="cpu", use_bf16=True)[
        "logits"
    ]
    naive = predict(
        model, feats, pad_collate(tok, max_length=64), 8, bucketed=False, device="cpu", use_bf16=False
    )
    one_by_one = np.stack([
        model(**{k: torch.tensor([feats[i][k]]) for k in ("input_ids", "attention_mask")}).logits[0].detach().numpy()
        for i in range(len(feats))
    ])  # fmt: skip
    assert bucketed.shape == (37, 3)
    np.testing.assert_allclose(bucketed, one_by_one, atol=1e-5)
    np.testing.assert_allclose(naive["logits"], one_by_one, atol=1e-5)
    assert (bucketed.argmax(-1) == naive["logits"].argmax(-1)).all()
    assert accuracy(bucketed.argmax(-1), feats["labels"]) == accuracy(
        naive["logits"].argmax(-1), feats["labels"]
    )


def test_bucketed_predict_per_token_outputs_are_trimmed_and_in_order(tok):
    task = make_task("panx")
    sents = [s.split() for s in varied_sentences(13, 3)]
    feats = tokenize_split(task, panx_ds(sents, [["O"] * len(s) for s in sents]), tok, max_length=24,
                           doc_stride=8, train=False)  # fmt: skip
    assert len(feats) > len(sents)  # long sentences became several windows
    model = tiny_model(XLMRobertaForTokenClassification, tok, num_labels=len(PANX_TAGS))
    out = predict(model, feats, pad_collate(tok), 4, device="cpu", use_bf16=False)["logits"]
    ref = predict(model, feats, pad_collate(tok), 1, bucketed=False, device="cpu", use_bf16=False)["logits"]
    assert [o.shape for o in out] == [(n, len(PANX_TAGS)) for n in feats["length"]]
    for a, b in zip(out, ref, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert token_predictions_to_tags(task, feats, out) == token_predictions_to_tags(task, feats, ref)
    assert [len(t) for t in token_predictions_to_tags(task, feats, out)] == [len(s) for s in sents]

    qa_model = tiny_model(XLMRobertaForQuestionAnswering, tok)
    qa_feats = tokenize_split(make_task("qa"), qa_ds(CONTEXT, "who lives in Paris ?", "the lazy dog"), tok,
                              max_length=24, doc_stride=6, train=False)  # fmt: skip
    qa_out = predict(qa_model, qa_feats, pad_collate(tok), 3, device="cpu", use_bf16=False)
    qa_ref = predict(qa_model, qa_feats, pad_collate(tok), 1, bucketed=False, device="cpu", use_bf16=False)
    assert [len(s) for s in qa_out["start_logits"]] == qa_feats["length"]
    for name in ("start_logits", "end_logits"):
        for a, b in zip(qa_out[name], qa_ref[name], strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
