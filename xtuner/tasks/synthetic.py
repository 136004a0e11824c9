"""The built-in synthetic suite: synth-xnli, synth-pawsx, synth-udpos, synth-panx, synth-xquad.

Each mirrors its real task's hub schema exactly (xtuner/tasks/schemas.py), so preprocessing, heads and metrics
are shared. Data is generated deterministically (xtuner/synth/generators.py) in the source language `en` and six
target languages s1..s6 of growing distance (xtuner/synth/languages.py). Every split exists for every language
(train in a target language is the "translate-train" analogue; the zero-shot protocol uses English train only).
"""

from __future__ import annotations

from collections.abc import Callable

import datasets

from xtuner.metrics import accuracy, seqeval_f1, squad_v1
from xtuner.synth import generators as gen
from xtuner.synth.languages import LANGUAGE_CODES, LANGUAGES
from xtuner.tasks import register_task
from xtuner.tasks import schemas as sc
from xtuner.tasks.base import HeadType, LoadContext, Task

LANGUAGE_INFO = {code: LANGUAGES[code].metadata() for code in LANGUAGE_CODES}
# bump whenever generated data changes: it is part of the tokenisation-cache key
# (2: synth-xnli neutral hypotheses add a fact instead of substituting a participant)
GENERATOR_VERSION = 2


def _seed(ctx: LoadContext) -> int:
    return int(ctx.options.get("synth_seed", gen.SUITE_SEED))


def _data_key(name: str):
    def key(split: str, lang: str, ctx: LoadContext) -> str:
        return f"{name}:{split}:{lang}:seed={_seed(ctx)}:generator=v{GENERATOR_VERSION}"

    return key


def _loader(rows_fn: Callable[..., dict], features: datasets.Features):
    def load(split: str, lang: str, ctx: LoadContext) -> datasets.Dataset:
        return datasets.Dataset.from_dict(rows_fn(split, lang, _seed(ctx)), features=features)

    return load


def _task(
    name, head, features, rows_fn, metric, main, inputs, label_column, labels, family, description
) -> Task:
    return Task(
        name=name,
        head=head,
        languages=LANGUAGE_CODES,
        features=features,
        loader=_loader(rows_fn, features),
        metric=metric,
        main_metric=main,
        inputs=inputs,
        label_column=label_column,
        labels=labels,
        family=family,
        description=description,
        language_info=LANGUAGE_INFO,
        data_key=_data_key(name),
        train_languages=LANGUAGE_CODES,  # parallel by construction: the translate-train analogue
    )


for _t in [
    _task("synth-xnli", HeadType.SEQUENCE_CLASSIFICATION, sc.XNLI_FEATURES, gen.nli_rows, accuracy, "accuracy",
          ("premise", "hypothesis"), "label", sc.NLI_LABELS, "xnli",
          "NLI from fact inclusion (entailment), substitution/added facts (neutral) and negation (contradiction)"),
    _task("synth-pawsx", HeadType.SEQUENCE_CLASSIFICATION, sc.PAWSX_FEATURES, gen.para_rows, accuracy, "accuracy",
          ("sentence1", "sentence2"), "label", sc.PAWSX_LABELS, "pawsx",
          "paraphrase detection with PAWS-style word-swap adversarial negatives"),
    _task("synth-udpos", HeadType.TOKEN_CLASSIFICATION, sc.UDPOS_FEATURES, gen.pos_rows, seqeval_f1, "f1",
          ("tokens",), "pos_tags", sc.UPOS_TAGS, "udpos", "UPOS tags from the grammar"),
    _task("synth-panx", HeadType.TOKEN_CLASSIFICATION, sc.PANX_FEATURES, gen.ner_rows, seqeval_f1, "f1",
          ("tokens",), "ner_tags", sc.PANX_TAGS, "panx", "IOB2 named entities (PER, ORG, LOC) for names"),
    _task("synth-xquad", HeadType.EXTRACTIVE_QA, sc.QA_FEATURES, gen.qa_rows, squad_v1, "f1",
          ("question", "context"), None, (), "qa", "extractive QA: who/what/where/how-many over a short story"),
]:  # fmt: skip
    register_task(_t)
