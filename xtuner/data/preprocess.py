"""Head-type preprocessing: raw hub-schema examples -> model features (one `datasets.map`, batched).

Design:
- One function per head type, chosen by `task.head`; all need a *fast* tokenizer (offsets, word ids).
- Every feature carries a `length` column (tokens before padding). Batching sorts on it, and it is the column
  name `transformers.Trainer(group_by_length=True)` looks for, so training can bucket by length too.
- Sequence classification: `tokenizer(a[, b], truncation=True, max_length)`; `labels` = ClassLabel ids.
- Token classification: words are tokenized with `is_split_into_words=True`; the FIRST sub-word of each word
  carries its tag id, every other position (special tokens, continuation pieces) is -100. A sentence longer than
  one window (`max_length` minus the special tokens) is split into consecutive windows of whole words, each
  filled greedily up to the limit, as XTREME's `utils_preprocess.py` (udpos/panx_tokenize_preprocess) splits
  long sentences, so every word is in exactly one feature and scored exactly once (`split_windows`). Bookkeeping
  columns: `sentence` (the row of the raw split), `word_offset` (index of the window's first word) and
  `word_starts[w]`, the token position of the window's word w's first sub-word, or -1 for a word the tokenizer
  maps to nothing (or, in a window of one word longer than the limit, never). Such words are NOT dropped from
  scoring; `postprocess.token_predictions_to_tags` predicts a fixed fallback tag for them.
- Extractive QA follows transformers' run_qa.py: question first (leading whitespace stripped), context
  second, `truncation="only_second"`, `stride=doc_stride` (HF meaning: the number of OVERLAPPING tokens
  between consecutive windows, not the step), overflowing windows, offsets. Train and eval features both get
  `start_positions`/`end_positions` of the first gold answer (the CLS index 0 when the answer is not fully
  inside the window, or there is no answer), so en-dev loss is computable. Eval features also keep
  `example_id` and `offset_mapping` with None for every non-context token (special and question tokens).
  A question too long to leave `doc_stride + 1` context tokens in a window is cut (at a token boundary of its
  own text, always strictly shorter, so the cut ends) so that windowing always progresses; run_qa.py would crash
  on it instead.

Bump PREPROCESS_VERSION whenever the output of any function here changes: it is part of the cache key.
"""

from __future__ import annotations

from typing import Any

import datasets
from datasets import Features, List, Value

from xtuner.errors import XtunerError
from xtuner.tasks.base import HeadType, Task

# 2: overlong questions are cut where the old cut did not shorten them; 3: tagging sentences longer than
# max_length are split into windows
PREPROCESS_VERSION = 3
IGNORE_INDEX = -100  # label of positions that carry no loss (torch CrossEntropyLoss ignore_index)
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
LABEL_COLUMNS = ("labels", "start_positions", "end_positions")


def model_columns(task: Task, train: bool) -> list[str]:
    """Columns the model consumes (inputs + labels). `token_type_ids` appears only if the tokenizer makes it:
    intersect with the dataset's columns, or use :func:`select_model_columns`."""
    labels = ["start_positions", "end_positions"] if task.head == HeadType.EXTRACTIVE_QA else ["labels"]
    return [*MODEL_INPUTS, *labels]


def select_model_columns(task: Task, ds: datasets.Dataset, train: bool) -> datasets.Dataset:
    """`ds` restricted to the model columns it has (drops bookkeeping such as offsets and word positions)."""
    return ds.select_columns([c for c in model_columns(task, train) if c in ds.column_names])


def tokenize_split(
    task: Task,
    ds: datasets.Dataset,
    tokenizer: Any,
    *,
    max_length: int,
    doc_stride: int,
    train: bool,
) -> datasets.Dataset:
    """Tokenize one split of `task` (hub schema) into model features plus bookkeeping columns."""
    if not getattr(tokenizer, "is_fast", False):
        raise XtunerError(
            f"task {task.name!r}: tokenizer {type(tokenizer).__name__} is not a fast (tokenizers-backed) "
            "tokenizer; offsets and word ids need one"
        )
    missing = [c for c in (*task.inputs, task.label_column) if c and c not in ds.column_names]
    if missing:
        raise XtunerError(f"task {task.name!r}: dataset lacks column(s) {missing}; it has {ds.column_names}")
    if task.head == HeadType.SEQUENCE_CLASSIFICATION:
        fn, features = _seq_cls_fn(task, tokenizer, max_length), _seq_cls_features(tokenizer)
    elif task.head == HeadType.TOKEN_CLASSIFICATION:
        fn, features = _token_cls_fn(task, tokenizer, max_length), _token_cls_features(tokenizer)
    elif task.head == HeadType.EXTRACTIVE_QA:
        fn = _qa_fn(tokenizer, max_length, doc_stride, train)
        features = _qa_features(tokenizer, train)
    else:  # pragma: no cover - HeadType is closed
        raise XtunerError(f"task {task.name!r}: unsupported head {task.head!r}")
    return ds.map(
        fn,
        batched=True,
        with_indices=task.head == HeadType.TOKEN_CLASSIFICATION,
        remove_columns=ds.column_names,
        features=features,
        desc=f"tokenize {task.name}",
    )


# ---------------------------------------------------------------- output schemas (small, stable arrow types)


def _base_features(tokenizer: Any) -> dict[str, Any]:
    feats: dict[str, Any] = {
        "input_ids": List(Value("int32")),
        "attention_mask": List(Value("int8")),
        "length": Value("int32"),
    }
    if "token_type_ids" in tokenizer.model_input_names:
        feats["token_type_ids"] = List(Value("int8"))
    return feats


def _seq_cls_features(tokenizer: Any) -> Features:
    return Features({**_base_features(tokenizer), "labels": Value("int64")})


def _token_cls_features(tokenizer: Any) -> Features:
    return Features(
        {
            **_base_features(tokenizer),
            "labels": List(Value("int64")),
            "word_starts": List(Value("int32")),
            "sentence": Value("int64"),
            "word_offset": Value("int32"),
        }
    )


def _qa_features(tokenizer: Any, train: bool) -> Features:
    feats = {
        **_base_features(tokenizer),
        "start_positions": Value("int64"),
        "end_positions": Value("int64"),
    }
    if not train:
        feats["example_id"] = Value("string")
        feats["offset_mapping"] = List(List(Value("int32")))
    return Features(feats)


def _model_inputs(enc: Any, tokenizer: Any) -> dict[str, list]:
    out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if "token_type_ids" in tokenizer.model_input_names:
        out["token_type_ids"] = enc["token_type_ids"]
    out["length"] = [len(ids) for ids in enc["input_ids"]]
    return out


# ---------------------------------------------------------------- sequence classification


def _seq_cls_fn(task: Task, tokenizer: Any, max_length: int):
    if task.label_column is None:
        raise XtunerError(f"task {task.name!r}: a sequence-classification task needs a label_column")
    if not 1 <= len(task.inputs) <= 2:
        raise XtunerError(
            f"task {task.name!r}: sequence classification takes 1 or 2 inputs, got {task.inputs}"
        )

    def fn(batch: dict[str, list]) -> dict[str, list]:
        enc = tokenizer(*[batch[c] for c in task.inputs], truncation=True, max_length=max_length)
        return {**_model_inputs(enc, tokenizer), "labels": batch[task.label_column]}

    return fn


# ---------------------------------------------------------------- token classification


def _token_cls_fn(task: Task, tokenizer: Any, max_length: int):
    if task.label_column is None or len(task.inputs) != 1:
        raise XtunerError(
            f"task {task.name!r}: token classification needs one input column (tokens) and a label_column"
        )
    words_col, tags_col = task.inputs[0], task.label_column
    budget = max(max_length - tokenizer.num_special_tokens_to_add(pair=False), 1)

    def fn(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        for words, tags in zip(batch[words_col], batch[tags_col], strict=True):
            if len(words) != len(tags):
                raise XtunerError(
                    f"task {task.name!r}: a sentence has {len(words)} words but {len(tags)} tags: {words[:8]}..."
                )
        full = tokenizer(batch[words_col], is_split_into_words=True, add_special_tokens=False)
        win_words, win_tags, sentence, offset = [], [], [], []
        for i, (words, tags) in enumerate(zip(batch[words_col], batch[tags_col], strict=True)):
            counts = [0] * len(words)
            for w in full.word_ids(i):
                if w is not None:
                    counts[w] += 1
            for start, end in split_windows(counts, budget):
                win_words.append(words[start:end])
                win_tags.append(tags[start:end])
                sentence.append(indices[i])
                offset.append(start)
        enc = tokenizer(win_words, is_split_into_words=True, truncation=True, max_length=max_length)
        labels, word_starts = [], []
        for i, tags in enumerate(win_tags):
            starts = [-1] * len(tags)
            row = [IGNORE_INDEX] * len(enc["input_ids"][i])
            for pos, w in enumerate(enc.word_ids(i)):
                if w is not None and starts[w] == -1:  # first sub-word of word w
                    starts[w] = pos
                    row[pos] = tags[w]
            labels.append(row)
            word_starts.append(starts)
        return {**_model_inputs(enc, tokenizer), "labels": labels, "word_starts": word_starts,
                "sentence": sentence, "word_offset": offset}  # fmt: skip

    return fn


def split_windows(token_counts: list[int], budget: int) -> list[tuple[int, int]]:
    """Consecutive word ranges ``[start, end)`` covering every word once, each holding at most `budget` tokens
    (`token_counts[w]`: sub-words of word w), filled greedily: a word that does not fit opens the next window,
    as XTREME's utils_preprocess.py does. A word longer than `budget` gets a window of its own (the tokenizer cuts
    it; its first sub-word still carries its tag). A sentence without words is one empty window."""
    windows, start, used = [], 0, 0
    for w, n in enumerate(token_counts):
        n = min(n, budget)
        if used + n > budget and w > start:
            windows.append((start, w))
            start, used = w, 0
        used += n
    windows.append((start, len(token_counts)))
    return windows


# ---------------------------------------------------------------- extractive QA


def _qa_fn(tokenizer: Any, max_length: int, doc_stride: int, train: bool):
    n_special = tokenizer.num_special_tokens_to_add(pair=True)
    q_budget = max_length - n_special - doc_stride - 1  # longest question that leaves stride+1 context tokens
    if q_budget < 1:
        raise XtunerError(
            f"QA: doc_stride={doc_stride} leaves no room in max_seq_length={max_length} "
            f"({n_special} special tokens): doc_stride must be < max_seq_length - {n_special} - question "
            "tokens (XTREME uses max_seq_length 384 with doc_stride 128)"
        )

    def fn(batch: dict[str, list]) -> dict[str, list]:
        questions = _fit_questions([q.lstrip() for q in batch["question"]], tokenizer, q_budget)
        enc = tokenizer(
            questions,
            batch["context"],
            truncation="only_second",
            max_length=max_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        sample_map = enc["overflow_to_sample_mapping"]
        starts, ends, example_ids, offsets_out = [], [], [], []
        for i, offsets in enumerate(enc["offset_mapping"]):
            seq_ids = enc.sequence_ids(i)
            ex = sample_map[i]
            s, e = answer_token_span(offsets, seq_ids, batch["answers"][ex])
            starts.append(s)
            ends.append(e)
            if not train:
                example_ids.append(batch["id"][ex])
                offsets_out.append(
                    [list(o) if sid == 1 else None for o, sid in zip(offsets, seq_ids, strict=True)]
                )
        out = {**_model_inputs(enc, tokenizer), "start_positions": starts, "end_positions": ends}
        if not train:
            out["example_id"] = example_ids
            out["offset_mapping"] = offsets_out
        return out

    return fn


def answer_token_span(
    offsets: list[tuple[int, int]], seq_ids: list[int | None], answers: dict[str, list]
) -> tuple[int, int]:
    """Token (start, end) of the first gold answer inside this window, or (0, 0) (CLS) when it is not fully
    inside or there is none. The walk of transformers' run_qa.py `prepare_train_features`, but bounded to the
    context tokens (run_qa.py walks onto the trailing </s> when the answer starts at the window's last token)."""
    if not answers["answer_start"] or not answers["text"][0]:
        return 0, 0
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    ctx = [i for i, sid in enumerate(seq_ids) if sid == 1]
    if not ctx:
        return 0, 0
    first, last = ctx[0], ctx[-1]
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return 0, 0
    tok_start, tok_end = first, last
    while tok_start <= last and offsets[tok_start][0] <= start_char:
        tok_start += 1
    while tok_end >= first and offsets[tok_end][1] >= end_char:
        tok_end -= 1
    return tok_start - 1, max(tok_end + 1, tok_start - 1)


def _fit_questions(questions: list[str], tokenizer: Any, budget: int) -> list[str]:
    """Cut questions longer than `budget` tokens to a prefix that fits (rare; see module doc). Each round cuts
    every still-too-long question to a strictly shorter prefix (`_shorter`), so the loop always ends: at worst
    at the empty string, which has no tokens. Re-tokenizing a prefix can give more tokens than the same prefix
    had inside the whole question; the next round then cuts again."""
    out = list(questions)
    todo = list(range(len(out)))
    while todo:
        enc = tokenizer([out[i] for i in todo], add_special_tokens=False, return_offsets_mapping=True)
        still = []
        for i, ids, offs in zip(todo, enc["input_ids"], enc["offset_mapping"], strict=True):
            if len(ids) > budget:
                out[i] = _shorter(out[i], offs, budget)
                still.append(i)
        todo = still
    return out


def _shorter(text: str, offsets: list[tuple[int, int]], budget: int) -> str:
    """A strictly shorter prefix of `text`, cut at a token boundary no later than the end of token `budget`.
    The end of that token does not always shorten the text: tokens can share one offset (XLM-R's lone "▁" and
    the character after it), or one token can cover the rest of the text. Then the latest token boundary inside
    the text that comes before the end of token `budget` is used, and failing that, one character less."""
    end = offsets[budget - 1][1]
    if 0 < end < len(text):
        return text[:end]
    bounds = [b for s, e in offsets[: budget + 1] for b in (s, e) if 0 < b < len(text) and b <= end]
    return text[: max(bounds, default=len(text) - 1)]
