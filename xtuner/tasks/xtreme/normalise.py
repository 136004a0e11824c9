"""Bring a dataset in any known hub schema to the task schema (exactly ``task.features``), one function per family.

Accepted input columns (the task schema itself is always accepted, so a ``save_to_disk`` copy of our own output
loads too):
- xnli: google/xtreme ``XNLI`` (language, sentence1, sentence2, gold_label: str) or facebook/xnli (premise,
  hypothesis, label: ClassLabel). "contradictory" becomes "contradiction".
- pawsx: google/xtreme ``PAWS-X.*`` (sentence1, sentence2, label: str "0"/"1"; no id -> row position) or
  google-research-datasets/paws-x (id, sentence1, sentence2, label: ClassLabel).
- udpos / panx: google/xtreme ``udpos.*`` / ``PAN-X.*`` (tokens, pos_tags / ner_tags as ClassLabel ids or tag
  strings; PAN-X ``langs`` is filled with the language when absent).
- qa: SQuAD-style (id, [title], context, question, answers{text, answer_start}); a missing title becomes "".

Labels are mapped by name, so a ClassLabel with another order or a string column works; a label outside the
task's list, a missing label (ClassLabel -1, no answer text), or a QA answer that does not match its context at
its ``answer_start`` raises XtunerError naming the source and row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from datasets import ClassLabel, Dataset, Features, List

from xtuner.errors import XtunerError
from xtuner.tasks.xtreme.readers import LABEL_ALIASES, UNLABELED_HINT, check_answers


def _leaf(feature: Any) -> Any:
    """The element feature of a sequence feature (or the feature itself)."""
    while isinstance(feature, (List, list)):
        feature = feature[0] if isinstance(feature, list) else feature.feature
    return feature


def label_encoder(feature: Any, labels: Sequence[str], where: str) -> Callable[[Any, int], int]:
    """Map one source label (ClassLabel id, label string or int id) to the task's label id."""
    src = _leaf(feature)
    names = list(labels)
    if isinstance(src, ClassLabel):
        table = [
            names.index(LABEL_ALIASES.get(n, n)) if LABEL_ALIASES.get(n, n) in names else -2
            for n in src.names
        ]

        def from_classlabel(v: Any, row: int) -> int:
            if v is None or v < 0:
                raise XtunerError(f"{where} row {row}: no label (id {v}). {UNLABELED_HINT}")
            if table[v] == -2:
                raise XtunerError(
                    f"{where} row {row}: label {src.names[v]!r} is not one of the task's labels {names}"
                )
            return table[v]

        return from_classlabel

    def from_value(v: Any, row: int) -> int:
        if v is None or (isinstance(v, str) and not v.strip()):
            raise XtunerError(f"{where} row {row}: no label. {UNLABELED_HINT}")
        if isinstance(v, str):
            name = LABEL_ALIASES.get(v.strip(), v.strip())
            if name in names:
                return names.index(name)
            raise XtunerError(f"{where} row {row}: label {v!r} is not one of the task's labels {names}")
        if isinstance(v, int) and 0 <= v < len(names):
            return v
        raise XtunerError(f"{where} row {row}: label {v!r} is not a valid id for the labels {names}")

    return from_value


def _need(ds: Dataset, columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise XtunerError(f"{where}: missing column(s) {missing}; found {ds.column_names}")


def _finish(ds: Dataset, fn: Callable, features: Features, where: str) -> Dataset:
    if len(ds) == 0:
        raise XtunerError(f"{where}: no examples")
    out = ds.map(fn, batched=True, with_indices=True, remove_columns=ds.column_names, features=features)
    return out.select_columns(list(features))


def _pairs(ds: Dataset, features: Features, labels: Sequence[str], lang: str, where: str) -> Dataset:
    first, second = [c for c in features if c not in ("id", "label")]
    if "language" in ds.column_names:  # google/xtreme XNLI holds every language in one table
        ds = ds.filter(lambda b: [v == lang for v in b["language"]], batched=True)
    renames = {"sentence1": first, "sentence2": second, "gold_label": "label"}
    ds = ds.rename_columns({k: v for k, v in renames.items() if k in ds.column_names and k != v})
    _need(ds, [first, second, "label"], where)
    enc = label_encoder(ds.features["label"], labels, where)
    has_id = "id" in ds.column_names

    def fn(batch: dict[str, list], idx: list[int]) -> dict[str, list]:
        out = {
            first: batch[first],
            second: batch[second],
            "label": [enc(v, i) for v, i in zip(batch["label"], idx, strict=True)],
        }
        if "id" in features:
            out["id"] = batch["id"] if has_id else idx
        return out

    return _finish(ds, fn, features, where)


def _tags(ds: Dataset, features: Features, labels: Sequence[str], lang: str, where: str) -> Dataset:
    tag_col = next(c for c in features if c not in ("tokens", "langs"))
    _need(ds, ["tokens", tag_col], where)
    enc = label_encoder(ds.features[tag_col], labels, where)
    has_langs = "langs" in ds.column_names

    def fn(batch: dict[str, list], idx: list[int]) -> dict[str, list]:
        tags = []
        for toks, seq, i in zip(batch["tokens"], batch[tag_col], idx, strict=True):
            if len(toks) != len(seq):
                raise XtunerError(f"{where} row {i}: {len(toks)} tokens but {len(seq)} tags")
            tags.append([enc(v, i) for v in seq])
        out = {"tokens": batch["tokens"], tag_col: tags}
        if "langs" in features:
            out["langs"] = batch["langs"] if has_langs else [[lang] * len(t) for t in batch["tokens"]]
        return out

    return _finish(ds, fn, features, where)


def _qa(ds: Dataset, features: Features, where: str) -> Dataset:
    _need(ds, ["id", "context", "question", "answers"], where)
    has_title = "title" in ds.column_names

    def fn(batch: dict[str, list], idx: list[int]) -> dict[str, list]:
        answers = []
        for ans, context, i in zip(batch["answers"], batch["context"], idx, strict=True):
            texts, starts = list(ans["text"]), [int(s) for s in ans["answer_start"]]
            if not any(t.strip() for t in texts):
                raise XtunerError(f"{where} row {i}: question has no gold answer. {UNLABELED_HINT}")
            if len(texts) != len(starts):
                raise XtunerError(f"{where} row {i}: {len(texts)} answer texts but {len(starts)} starts")
            check_answers(context, texts, starts, f"{where} row {i}")
            answers.append({"text": texts, "answer_start": starts})
        return {
            "id": [str(x) for x in batch["id"]],
            "title": batch["title"] if has_title else [""] * len(idx),
            "context": batch["context"],
            "question": batch["question"],
            "answers": answers,
        }

    return _finish(ds, fn, features, where)


def normalise(
    ds: Dataset, *, family: str, features: Features, labels: Sequence[str], lang: str, where: str
) -> Dataset:
    """Return `ds` in exactly `features` (column order included); `where` names the source in errors."""
    if family in ("xnli", "pawsx"):
        return _pairs(ds, features, labels, lang, where)
    if family in ("udpos", "panx"):
        return _tags(ds, features, labels, lang, where)
    if family == "qa":
        return _qa(ds, features, where)
    raise XtunerError(f"no normaliser for task family {family!r}")
