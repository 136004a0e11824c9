"""The seven XTREME tasks of the paper (xnli, pawsx, udpos, panx, xquad, mlqa, tydiqa) as registered `Task`s.

A task is data: its languages, schema, metric, and two maps saying where a (split, language) lives on the hub and
in an XTREME download folder (``layout``). One generic loader picks the source (``sources.resolve_source``), fetches
and normalises to the task schema. See ``xtuner.tasks.xtreme`` for how a user picks the source.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from datasets import Dataset, Features

from xtuner.data.identity import path_fingerprint
from xtuner.errors import XtunerError
from xtuner.metrics import accuracy, seqeval_f1, squad_v1
from xtuner.metrics.mlqa import mlqa
from xtuner.tasks import register_task
from xtuner.tasks.base import HeadType, LoadContext, Metric, Task
from xtuner.tasks.schemas import (
    NLI_LABELS,
    PANX_FEATURES,
    PANX_TAGS,
    PAWSX_FEATURES,
    PAWSX_LABELS,
    QA_FEATURES,
    UDPOS_FEATURES,
    UPOS_TAGS,
    XNLI_FEATURES,
)
from xtuner.tasks.xtreme import layout
from xtuner.tasks.xtreme.normalise import normalise
from xtuner.tasks.xtreme.readers import READER_VERSION, READERS
from xtuner.tasks.xtreme.releases import RELEASE_MARKERS, RELEASE_READERS, RELEASES
from xtuner.tasks.xtreme.sources import (
    FilePart,
    fetch_files,
    fetch_hub,
    fetch_local,
    find_local,
    first_file,
    hub_mirror,
    mirror_files,
    resolve_source,
)

ALL_READERS = {**READERS, **RELEASE_READERS}
XNLI_LANGS = ["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"]
PAWSX_LANGS = ["en", "de", "es", "fr", "ja", "ko", "zh"]
UDPOS_LANGS = sorted(layout.UDPOS_NAMES)
PANX_LANGS = [
    "af", "ar", "bg", "bn", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu", "id", "it",
    "ja", "jv", "ka", "kk", "ko", "ml", "mr", "ms", "my", "nl", "pt", "ru", "sw", "ta", "te", "th", "tl", "tr",
    "ur", "vi", "yo", "zh",
]  # fmt: skip
XQUAD_LANGS = ["en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi"]
MLQA_LANGS = ["en", "es", "de", "ar", "hi", "vi", "zh"]
TYDIQA_LANGS = sorted(layout.TYDIQA_NAMES)


@dataclass(frozen=True)
class XtremeLoader:
    """Loader(split, lang, ctx) for one task: source choice -> fetch -> exact task schema."""

    task: str
    family: str
    features: Features
    labels: tuple[str, ...]
    hub: layout.HubMap
    files: layout.FileMap
    reader: str  # readers.READERS key (XTREME download folder)
    reader_kwargs: tuple[tuple[str, Any], ...]
    markers: tuple[str, ...]  # folders of an XTREME download dir that this task reads

    def _source(self, ctx: LoadContext) -> str:
        return resolve_source(self.task, self.markers, ctx, RELEASE_MARKERS.get(self.task, ()))

    def _file_plan(self, split: str, lang: str, ctx: LoadContext, source: str) -> tuple[FilePart, str, dict]:
        """(candidate files, reader name, reader kwargs) of a split read from files (xtreme or release)."""
        assert ctx.data_dir is not None
        root = Path(ctx.data_dir)
        if source == "xtreme":
            part = self.files(split, lang, root)
            if not part.hint:  # a missing file names the ways to read this split from elsewhere
                part = replace(part, hint=self.missing_hint(split))
            if part.reader == "translated_pairs":  # XTREME's translations: the task's columns and labels
                return part, part.reader, dict(self.reader_kwargs)
            if part.reader:  # a file in another format (GLUE's MNLI dev set for xnli, translated SQuAD)
                return part, part.reader, {}
            kwargs = dict(self.reader_kwargs)
            if self.reader == "tags":
                kwargs["lang"] = lang
            return part, self.reader, kwargs
        release = RELEASES.get(self.task)
        if release is None:
            raise XtunerError(
                f"task {self.task!r} has no reader for its original release: take its {split} split from the hub "
                f"({split}_data: hub), an XTREME download folder or local parquet (docs/data.md)"
            )
        rp = release(split, lang, root)
        kwargs = dict(rp.kwargs) if rp.reader == "squad" else {**rp.kwargs, "labels": self.labels}
        return rp.part, rp.reader, kwargs

    def missing_hint(self, split: str) -> str:
        """What to do when an XTREME folder lacks a test or dev file: read that split from another source
        (`<split>_data`), or, for test, evaluate on the dev sets where the task has them."""
        if split not in ("test", "validation"):
            return ""
        from xtuner.tasks import get_task

        key = f"{split}_data"
        text = (f"this split can come from another source, set per task in the spec (tasks.{self.task}.trial.{key}) "
                f"or with xtuner trial --{key.replace('_', '-')}: {key}: hub, {key}: release:<folder> (the original "
                f"release's labelled files), or {key}: <folder> with the file in this layout")  # fmt: skip
        if split == "test":
            why_not = get_task(self.task).no_dev_eval
            text += ("; eval_split: validation is not possible for this task (no dev set besides English's)"
                     if why_not else "; or evaluate zero-shot on the dev sets with eval_split: validation")  # fmt: skip
        return text + " (docs/data.md)"

    def data_key(self, split: str, lang: str, ctx: LoadContext) -> str | None:
        """Names this split's raw data exactly: the source, the readers' version and the real paths and contents
        of the files it reads (``xtuner.data.identity``). None for the online hub (datasets fingerprints it) and
        when the split cannot be found (loading then raises the full error)."""
        try:
            source = self._source(ctx)
            if source in ("xtreme", "release"):
                part, reader, _ = self._file_plan(split, lang, ctx, source)
                path, id_prefix = first_file(part)
                files, what = [path], f"{reader}:id_prefix={id_prefix}"
            elif source == "local":
                local = find_local(self.task, split, lang, ctx)
                files, what = list(local.paths), f"{local.kind}[{local.split}]"
            else:
                hub = self.hub(split, lang, ctx.options.get("hub_repo"))
                mirror = hub_mirror(ctx)
                if mirror is None:
                    return None
                files, what = mirror_files(hub, mirror), hub.describe()
        except XtunerError:
            return None
        return (
            f"{self.task}:{split}:{lang}:source={source}:{what}:reader=v{READER_VERSION}:"
            f"files={path_fingerprint(*files)}"
        )

    def __call__(self, split: str, lang: str, ctx: LoadContext) -> Dataset:
        source = self._source(ctx)
        if source in ("xtreme", "release"):
            part, reader, kwargs = self._file_plan(split, lang, ctx, source)
            return fetch_files(part, ALL_READERS[reader], kwargs, self.features, ctx)
        if source == "local":
            ds, where = fetch_local(self.task, split, lang, ctx)
        else:
            hub = self.hub(split, lang, ctx.options.get("hub_repo"))
            ds, where = fetch_hub(hub, ctx), hub.describe()
        if split == "train" and self.family == "pawsx" and lang != "en":
            ds = drop_unlabelled(ds)  # PAWS-X's translated train sets mark some pairs -1
        return normalise(
            ds, family=self.family, features=self.features, labels=self.labels, lang=lang, where=where
        )


def drop_unlabelled(ds: Dataset) -> Dataset:
    """The rows whose label is not -1 (an int, or the string "-1")."""
    if "label" not in ds.column_names:
        return ds
    return ds.filter(lambda b: [str(v).strip() != "-1" for v in b["label"]], batched=True)


def _task(
    name: str,
    family: str,
    head: HeadType,
    languages: list[str],
    features: Features,
    labels: tuple[str, ...],
    metric: Metric,
    main_metric: str,
    inputs: tuple[str, ...],
    label_column: str | None,
    hub: layout.HubMap,
    files: layout.FileMap,
    reader: str,
    reader_kwargs: dict[str, Any],
    markers: tuple[str, ...],
    description: str,
    dev_splits: tuple[str, ...] = ("validation",),
    train_languages: tuple[str, ...] = (),
    no_dev_eval: str = "",
) -> Task:
    loader = XtremeLoader(
        name, family, features, labels, hub, files, reader, tuple(reader_kwargs.items()), markers
    )
    return register_task(
        Task(
            name=name,
            head=head,
            languages=tuple(languages),
            features=features,
            loader=loader,
            metric=metric,
            main_metric=main_metric,
            inputs=inputs,
            label_column=label_column,
            labels=labels,
            source_lang="en",
            family=family,
            description=description,
            data_key=loader.data_key,
            dev_splits=dev_splits,
            train_languages=train_languages,
            no_dev_eval=no_dev_eval,
        )
    )


_SEQ, _TOK, _QA = HeadType.SEQUENCE_CLASSIFICATION, HeadType.TOKEN_CLASSIFICATION, HeadType.EXTRACTIVE_QA
_TRAIN_EN = "XTREME's download folder has training data only for en (zero-shot transfer); the hub has more"

XNLI = _task(
    "xnli", "xnli", _SEQ, XNLI_LANGS, XNLI_FEATURES, NLI_LABELS, accuracy, "accuracy", ("premise", "hypothesis"),
    "label", layout.xnli_hub, layout.xnli_files(_TRAIN_EN), "pairs",
    {"columns": ("premise", "hypothesis"), "labels": NLI_LABELS, "with_id": False}, ("xnli",),
    "XNLI: natural language inference, trained on MultiNLI English, tested in 15 languages; dev splits: "
    "validation (XNLI en dev) or mnli_matched (MNLI validation_matched, as salesforce/MPT).",
    dev_splits=("validation", layout.MNLI_MATCHED), train_languages=tuple(XNLI_LANGS),
)  # fmt: skip
PAWSX = _task(
    "pawsx", "pawsx", _SEQ, PAWSX_LANGS, PAWSX_FEATURES, PAWSX_LABELS, accuracy, "accuracy",
    ("sentence1", "sentence2"), "label", layout.pawsx_hub, layout.tsv_files("pawsx", _TRAIN_EN, "PAWSX"), "pairs",
    {"columns": ("sentence1", "sentence2"), "labels": PAWSX_LABELS, "with_id": True}, ("pawsx",),
    "PAWS-X: paraphrase identification, trained on PAWS English, tested in 7 languages.",
    train_languages=tuple(PAWSX_LANGS),
)  # fmt: skip
UDPOS = _task(
    "udpos", "udpos", _TOK, UDPOS_LANGS, UDPOS_FEATURES, UPOS_TAGS, seqeval_f1, "f1", ("tokens",), "pos_tags",
    layout.udpos_hub, layout.tsv_files("udpos", ""), "tags",
    {"tag_column": "pos_tags", "labels": UPOS_TAGS, "with_langs": False}, ("udpos",),
    "UD-POS: universal POS tagging (UD treebanks), scored with seqeval F1 over raw UPOS tags, 33 languages.",
)  # fmt: skip
PANX = _task(
    "panx", "panx", _TOK, PANX_LANGS, PANX_FEATURES, PANX_TAGS, seqeval_f1, "f1", ("tokens",), "ner_tags",
    layout.panx_hub, layout.tsv_files("panx", ""), "tags",
    {"tag_column": "ner_tags", "labels": PANX_TAGS, "with_langs": True}, ("panx",),
    "PAN-X (WikiANN): named entity recognition (PER/ORG/LOC, IOB2), entity F1, 40 languages.",
    train_languages=tuple(PANX_LANGS),
)  # fmt: skip
XQUAD = _task(
    "xquad", "qa", _QA, XQUAD_LANGS, QA_FEATURES, (), squad_v1, "f1", ("question", "context"), None,
    layout.xquad_hub, layout.xquad_files, "squad", {}, ("xquad", "squad"),
    "XQuAD: extractive QA, trained on SQuAD v1.1, tested on the 11 XQuAD languages (SQuAD v1.1 metric).",
    train_languages=tuple(XQUAD_LANGS),  # non-English: XTREME's translated SQuAD in an XTREME download folder
    no_dev_eval=layout.XQUAD_NO_DEV_EVAL,
)  # fmt: skip
MLQA = _task(
    "mlqa", "qa", _QA, MLQA_LANGS, QA_FEATURES, (), mlqa, "f1", ("question", "context"), None,
    layout.mlqa_hub, layout.mlqa_files, "squad", {}, ("mlqa", "squad"),
    "MLQA: extractive QA, trained on SQuAD v1.1, context and question in the same language, official MLQA metric.",
    train_languages=tuple(MLQA_LANGS),  # non-English: XTREME's translated SQuAD in an XTREME download folder
)  # fmt: skip
TYDIQA = _task(
    "tydiqa", "qa", _QA, TYDIQA_LANGS, QA_FEATURES, (), squad_v1, "f1", ("question", "context"), None,
    layout.tydiqa_hub, layout.tydiqa_files, "squad", {}, ("tydiqa", "squad"),
    "TyDiQA-GoldP: extractive QA, trained on the English GoldP train set, selected on SQuAD v1.1 dev, tested on "
    "the GoldP dev sets.",
    train_languages=tuple(TYDIQA_LANGS),
    no_dev_eval=layout.TYDIQA_NO_DEV_EVAL,
)  # fmt: skip
