"""The parallel rows the representation analysis encodes (salesforce/MPT ``--do_analysis``): the first N rows of
each language's **train** split of a sentence-pair task whose train split translates the English one (PAWS-X's
machine-translated train files, XNLI-MT; every split of the synthetic suite is parallel).

Rows are matched by id (the ``id`` column, or the row position for schemas without one, e.g. XNLI, whose MT files
are line-parallel); a row is dropped in EVERY language when it is missing from any language's first N rows or
labelled -1 in any of them, so all languages are measured on the same rows. The English row's label is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xtuner.errors import XtunerError
from xtuner.tasks.base import HeadType, LoadContext, Task

DEFAULT_ROWS = 2000
MAX_LENGTH = 128  # the reference's max_seq_length for the analysis


@dataclass
class Table:
    """One language's first rows: ids, labels and the two input texts."""

    ids: list[Any]
    labels: list[int]
    pairs: list[tuple[str, str]]


@dataclass
class ParallelRows:
    languages: list[str]  # the analysed languages, English excluded
    ids: list[Any]
    labels: np.ndarray
    pairs: dict[str, list[tuple[str, str]]]  # English included
    dropped: dict[str, int] = field(default_factory=dict)  # rows of English's first N left out, and why


def check_pair_task(task: Task) -> None:
    if task.head != HeadType.SEQUENCE_CLASSIFICATION or len(task.inputs) != 2:
        raise XtunerError(f"task {task.name!r} is not a sentence-pair task ({task.head}, inputs {list(task.inputs)}): "
                          "the representation analysis encodes a pair jointly, as for XNLI or PAWS-X")  # fmt: skip


def align(tables: dict[str, Table], source: str) -> ParallelRows:
    """Rows present in every table and labelled (not -1) in every table, in the source table's order."""
    by_id = {lang: {} for lang in tables}
    for lang, t in tables.items():
        for i, rid in enumerate(t.ids):
            by_id[lang].setdefault(rid, i)  # a repeated id: its first row
    missing = unlabelled = 0
    keep: list[Any] = []
    for rid in dict.fromkeys(tables[source].ids):
        if any(rid not in by_id[lang] for lang in tables):
            missing += 1
        elif any(tables[lang].labels[by_id[lang][rid]] == -1 for lang in tables):
            unlabelled += 1
        else:
            keep.append(rid)
    others = [lang for lang in tables if lang != source]
    for lang in others:
        shared = sum(rid in by_id[lang] for rid in tables[source].ids)
        if shared == 0:
            raise XtunerError(f"language {lang!r} shares no row id with {source!r} among the first rows of its train "
                              "split: it has no parallel rows to analyse")  # fmt: skip
    if len(keep) < 2:
        raise XtunerError(f"only {len(keep)} row(s) are present and labelled in every language ({missing} missing "
                          f"somewhere, {unlabelled} labelled -1): too few to analyse")  # fmt: skip
    src = tables[source]
    return ParallelRows(
        languages=sorted(others),
        ids=keep,
        labels=np.array([src.labels[by_id[source][rid]] for rid in keep]),
        pairs={lang: [t.pairs[by_id[lang][rid]] for rid in keep] for lang, t in tables.items()},
        dropped={"missing": missing, "unlabelled": unlabelled},
    )


# readers of machine-translated train sets (xtuner.tasks.xtreme.readers): their rows carry ids that count lines
# of the translation, not the English rows they translate, so aligning them with English by id would pair
# unrelated sentences without a sign
MACHINE_TRANSLATED_READERS = ("translated_pairs", "squad_translated")


def load_parallel(task: Task, languages: Sequence[str], ctx: LoadContext | None = None, *,
                  rows: int = DEFAULT_ROWS, split: str = "train") -> ParallelRows:  # fmt: skip
    """The aligned first `rows` rows of `task`'s `split` in English and `languages`."""
    check_pair_task(task)
    if rows < 2:
        raise XtunerError(f"rows must be at least 2, got {rows}")
    source = task.source_lang
    targets = sorted(set(languages) - {source})
    for lang in targets:
        task.check_language(lang)
    if not targets:
        raise XtunerError(f"task {task.name!r}: give at least one language besides {source!r} to compare with it")
    first, second = task.inputs
    tables = {}
    for lang in [source, *targets]:
        key = task.raw_data_key(split, lang, ctx or LoadContext()) if lang != source else None
        if key and any(f":{r}:" in key for r in MACHINE_TRANSLATED_READERS):
            raise XtunerError(
                f"task {task.name!r}: no parallel {split} rows in {lang!r} to analyse: its {split} data is XTREME's "
                "machine-translated set (translate-train), which is not aligned row by row with the English rows "
                "(other order, unlabelled pairs dropped); use the hub's data or the synthetic suite"
            )
        try:
            ds = task.load(split, lang, ctx or LoadContext())
        except XtunerError as e:
            raise XtunerError(f"task {task.name!r}: no parallel {split} rows in {lang!r} to analyse: {e}") from None
        ds = ds.select(range(min(rows, len(ds))))
        ids = list(ds["id"]) if "id" in ds.column_names else list(range(len(ds)))
        labels = [int(v) if v is not None else -1 for v in ds[task.label_column]]
        tables[lang] = Table(ids, labels, list(zip(ds[first], ds[second], strict=True)))
    return align(tables, source)
