"""The Task record: what a task declares, and the one `load` entry point with validation.

A task is composition, not subclassing (seqio style): a name, a head type, languages, labels, the hub schema
(`features`), a loader function and a metric function. Real XTREME tasks and the synthetic suite are built the
same way, so every code path (preprocessing, heads, metrics) runs offline on the synthetic twins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import datasets

from xtuner.errors import XtunerError, unknown_name

SPLITS = ("train", "validation", "test")


class HeadType(StrEnum):
    SEQUENCE_CLASSIFICATION = "sequence_classification"
    TOKEN_CLASSIFICATION = "token_classification"
    EXTRACTIVE_QA = "extractive_qa"
    RETRIEVAL = "retrieval"  # no training: sentence embeddings of the encoder, scored by retrieval (xtuner.retrieval)


EVAL_SPLITS = ("test", "validation")  # what a trial evaluates zero-shot on (`eval_split`)
SPLIT_SOURCES = ("hub", "xtreme", "local", "release")  # source kinds a split can name


def parse_split_source(value: str) -> tuple[str | None, Path | None]:
    """A per-split source setting as (kind or None = detect, folder or None): ``hub``, ``<folder>``, or
    ``<kind>:<folder>`` with kind xtreme, local or release. Raises XtunerError on anything else."""
    text = str(value).strip()
    if text == "hub":
        return "hub", None
    kind, sep, rest = text.partition(":")
    if sep and kind in SPLIT_SOURCES and kind != "hub":
        if not rest.strip():
            raise XtunerError(f"data source {text!r}: give a folder after {kind + ':'!r}")
        return kind, Path(rest.strip()).expanduser()
    if sep and kind.isalpha() and len(kind) > 1 and "/" not in kind:  # looks like an unknown kind
        raise unknown_name("data source kind", kind, [k for k in SPLIT_SOURCES if k != "hub"])
    if not text:
        raise XtunerError("empty data source: give hub, a folder, or xtreme:|local:|release:<folder>")
    return None, Path(text).expanduser()


def absolute_split_source(value: str) -> str:
    """`value` with its folder made absolute (symlinks resolved); the folder must exist."""
    kind, folder = parse_split_source(value)
    if folder is None:
        return str(kind)
    if not folder.is_dir():
        raise XtunerError(f"{str(folder)!r} is not a directory")
    return f"{kind}:{folder.resolve()}" if kind else str(folder.resolve())


@dataclass(frozen=True)
class LoadContext:
    """Where a loader may look for data. `data_dir` is an XTREME `download/` folder, a labelled release's folder or
    local parquet files. `splits` maps a split to its own source (``parse_split_source``), e.g. ``{"test":
    "hub"}`` or ``{"test": "release:/data/XNLI-1.0"}``; the other splits use `data_dir`."""

    data_dir: Path | None = None
    cache_dir: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    splits: Mapping[str, str] = field(default_factory=dict)

    def for_split(self, split: str) -> LoadContext:
        """The context one split loads with: its own source when `splits` names one, else this one."""
        value = self.splits.get(split)
        if not value:
            return LoadContext(self.data_dir, self.cache_dir, self.options)
        kind, folder = parse_split_source(value)
        options = {**self.options, "source": kind or "auto"}  # a named source is never overridden by the env
        return LoadContext(folder, self.cache_dir, options)


# loader(split, lang, ctx) -> datasets.Dataset in the task's hub schema
Loader = Callable[[str, str, LoadContext], datasets.Dataset]
# metric(predictions, references, lang) -> flat dict of floats; see xtuner.metrics for the conventions per head
Metric = Callable[[Sequence[Any], Sequence[Any], str], dict[str, float]]


@dataclass(frozen=True)
class Task:
    name: str
    head: HeadType
    languages: tuple[str, ...]  # every language with a test split, the source language included
    features: datasets.Features
    loader: Loader
    metric: Metric
    main_metric: str  # key of `metric`'s output used for selection and tables (e.g. "accuracy", "f1")
    inputs: tuple[str, ...]  # text columns fed to the tokenizer
    label_column: str | None  # None for QA (answers column)
    labels: tuple[str, ...] = ()
    source_lang: str = "en"
    family: str = (
        ""  # schema family shared by a real task and its synthetic twin: xnli, pawsx, udpos, panx, qa
    )
    description: str = ""
    # English dev sets model selection can read (TrialConfig.dev_split); "validation" is always one, a task may
    # offer more (xnli: "mnli_matched", the MNLI dev set salesforce/MPT selects on)
    dev_splits: tuple[str, ...] = ("validation",)
    language_info: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # data_key(split, lang, ctx) -> a string that names the raw data exactly (or None if it cannot tell cheaply);
    # with it, a tokenisation-cache hit never loads the raw data (see xtuner/data/cache.py)
    data_key: Callable[[str, str, LoadContext], str | None] | None = None
    # languages whose train split this task can load (translate-train data, or native data like PAN-X's); an
    # intermediate stage's multilingual variant trains on them (xtuner.intermediate). Default: the source language
    train_languages: tuple[str, ...] = ()
    # why `eval_split: validation` cannot work for this task (it has no dev set apart from English's selection set,
    # or its dev set is its test set); empty: every language has a dev set of its own
    no_dev_eval: str = ""

    def __post_init__(self) -> None:
        if self.source_lang not in self.languages:
            raise XtunerError(
                f"task {self.name!r}: source language {self.source_lang!r} not in its languages"
            )
        object.__setattr__(self, "languages", tuple(sorted(self.languages)))
        object.__setattr__(self, "train_languages", tuple(sorted(self.train_languages or (self.source_lang,))))

    @property
    def target_languages(self) -> tuple[str, ...]:
        return tuple(lang for lang in self.languages if lang != self.source_lang)

    def check_language(self, lang: str) -> None:
        if lang not in self.languages:
            raise unknown_name("language", lang, self.languages, where=f"for task {self.name!r}")

    def check_split(self, split: str) -> None:
        if split not in SPLITS and split not in self.dev_splits:
            raise unknown_name("split", split, (*SPLITS, *(s for s in self.dev_splits if s not in SPLITS)))

    def check_eval_split(self, split: str, languages: Sequence[str] | None = None) -> None:
        """`eval_split` `split` is possible for this task and its evaluated `languages` (None: all of them):
        ``validation`` needs a dev set in every language but the source language, whose dev set is the selection
        set (an intermediate stage 1 evaluates only that one)."""
        if split not in EVAL_SPLITS:
            raise unknown_name("eval_split", split, EVAL_SPLITS)
        only_source = languages is not None and all(lang == self.source_lang for lang in languages)
        if split == "validation" and self.no_dev_eval and not only_source:
            raise XtunerError(f"eval_split 'validation' is not possible for task {self.name!r}: {self.no_dev_eval}")

    def check_dev_split(self, split: str) -> None:
        """A split that model selection can read; the error lists the task's dev splits."""
        if split not in self.dev_splits:
            raise unknown_name("dev split", split, self.dev_splits, where=f"for task {self.name!r}")

    def load(self, split: str, lang: str, ctx: LoadContext | None = None) -> datasets.Dataset:
        """Load one split of one language in the hub schema; raises XtunerError on unknown split/lang."""
        self.check_split(split)
        self.check_language(lang)
        ds = self.loader(split, lang, (ctx or LoadContext()).for_split(split))
        if ds.features != self.features:
            raise XtunerError(
                f"task {self.name!r} {split}/{lang}: loaded features {ds.features} differ from the task schema "
                f"{self.features}"
            )
        return ds

    def raw_data_key(self, split: str, lang: str, ctx: LoadContext | None = None) -> str | None:
        """A string naming this split's raw data exactly, or None. A task's own `data_key` names the files the
        split reads (the XTREME tasks: their real paths and contents). Without one, every file under `data_dir`
        is named by its real path and content (symlinked folders followed; correct, but it reads the whole
        folder: an outside task that reads few files of a big folder should give a `data_key`); the hub by
        nothing (its datasets are fingerprinted by `datasets`)."""
        ctx = (ctx or LoadContext()).for_split(split)
        if self.data_key is not None:
            return self.data_key(split, lang, ctx)
        if ctx.data_dir is not None:
            import os

            from xtuner.data.identity import path_fingerprint

            env = ",".join(
                f"{k}={os.environ.get(k, '')}" for k in ("XTUNER_DATA_SOURCE", "XTUNER_HUB_MIRROR")
            )
            opts = ",".join(f"{k}={v}" for k, v in sorted(ctx.options.items()))
            return f"{self.name}:{split}:{lang}:dir={path_fingerprint(ctx.data_dir)}:{env}:{opts}"
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "head": str(self.head),
            "source_lang": self.source_lang,
            "languages": list(self.languages),
            "labels": list(self.labels),
            "metric": self.main_metric,
            "family": self.family,
            "description": self.description,
        }
