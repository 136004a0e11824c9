"""The synthetic retrieval tasks, synth-tatoeba and synth-bucc: offline twins of tatoeba and bucc2018 (same schema,
splits, metrics and scoring; data from ``xtuner/synth/retrieval.py``), in en and s1..s6."""

from __future__ import annotations

import datasets

from xtuner.metrics.retrieval import bucc_f1, retrieval_accuracy
from xtuner.synth import generators as gen
from xtuner.synth import retrieval as synth
from xtuner.synth.languages import LANGUAGE_CODES
from xtuner.tasks import register_task
from xtuner.tasks.base import HeadType, LoadContext, Task
from xtuner.tasks.schemas import RETRIEVAL_FEATURES
from xtuner.tasks.synthetic import LANGUAGE_INFO
from xtuner.tasks.xtreme.retrieval import check_pivot
from xtuner.tasks.xtreme.retrieval_files import bucc_rows, parallel_rows


def _seed(ctx: LoadContext) -> int:
    return int(ctx.options.get("synth_seed", gen.SUITE_SEED))


def _tatoeba(split: str, lang: str, ctx: LoadContext) -> datasets.Dataset:
    check_pivot("synth-tatoeba", split, lang, ("test",))
    other, english = synth.tatoeba_pairs(lang, _seed(ctx))
    return datasets.Dataset.from_dict(parallel_rows(lang, other, english, "synth-tatoeba"), features=RETRIEVAL_FEATURES)


def _bucc(split: str, lang: str, ctx: LoadContext) -> datasets.Dataset:
    check_pivot("synth-bucc", split, lang, ("validation", "test"))
    src, en, gold = synth.bucc_part(lang, split, _seed(ctx))
    sides = [([i for i, _ in lines], [s for _, s in lines]) for lines in (src, en)]
    rows = bucc_rows(lang, sides[0], sides[1], gold, "synth-bucc")
    return datasets.Dataset.from_dict(rows, features=RETRIEVAL_FEATURES)


for _name, _family, _loader, _metric, _main, _desc in [
    ("synth-tatoeba", "tatoeba", _tatoeba, retrieval_accuracy, "accuracy",
     "sentence retrieval among 500 line-parallel synthetic sentences (Tatoeba's twin)"),
    ("synth-bucc", "bucc", _bucc, bucc_f1, "f1",
     "parallel sentence mining in synthetic comparable corpora, 20 % of each side translated (BUCC's twin)"),
]:  # fmt: skip
    register_task(Task(name=_name, head=HeadType.RETRIEVAL, languages=LANGUAGE_CODES, features=RETRIEVAL_FEATURES,
                       loader=_loader, metric=_metric, main_metric=_main, inputs=("sentence",), label_column="gold",
                       family=_family, description=_desc, language_info=LANGUAGE_INFO,
                       data_key=lambda split, lang, ctx: None))  # fmt: skip
