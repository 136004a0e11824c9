"""Evaluate one encoder on a retrieval task: per language, embed both sides, predict as XTREME does
(``search``), score with the task's metric (``xtuner.metrics.retrieval``).

- tatoeba family: ``accuracy`` = XTREME's (each English sentence retrieves the other language's sentence); also
  ``accuracy_to_en``, the other direction, which XTREME does not report;
- bucc family: the threshold is chosen on the ``validation`` (sample) gold and applied to the evaluated split, as
  XTREME does; ``f1``, ``precision``, ``recall`` and the ``threshold`` are reported. With ``split="validation"``
  the threshold is chosen on the very pairs it is scored on (an optimistic F1, said in the docs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xtuner.errors import XtunerError
from xtuner.retrieval import search
from xtuner.retrieval.encode import default_layer, sentence_vectors
from xtuner.tasks.base import HeadType, LoadContext, Task

XTREME_MAX_LENGTH = 512  # MAXL in run_tatoeba.sh / run_bucc2018.sh


@dataclass
class Side:
    ids: list[str]
    sentences: list[str]
    gold: list[list[str]]
    vectors: np.ndarray | None = None


@dataclass
class Encoder:
    """A model and its tokenizer, with the retrieval recipe (layer, max length, batch size)."""

    model: object
    tokenizer: object
    layer: int | None = None  # None = XTREME's layer for the task family and the model's depth
    max_length: int = XTREME_MAX_LENGTH
    batch_size: int = 64

    def layer_for(self, family: str) -> int:
        if self.layer is not None:
            return self.layer
        from xtuner.methods import backbone_of

        return default_layer(int(backbone_of(self.model).config.num_hidden_layers), family)

    def vectors(self, sentences: list[str], family: str) -> np.ndarray:
        return sentence_vectors(self.model, self.tokenizer, sentences, layer=self.layer_for(family),
                                pooling="mean", max_length=self.max_length, batch_size=self.batch_size)  # fmt: skip


def sides(task: Task, split: str, lang: str, ctx: LoadContext) -> tuple[Side, Side]:
    """(the language's side, the English side) of one table."""
    table = task.load(split, lang, ctx).to_dict()
    out = {lang: Side([], [], []), "en": Side([], [], [])}
    for sid, row_lang, sentence, gold in zip(table["id"], table["lang"], table["sentence"], table["gold"],
                                             strict=True):  # fmt: skip
        if row_lang not in out:
            raise XtunerError(f"task {task.name!r} {split}/{lang}: row {sid!r} has language {row_lang!r}; expected "
                              f"{lang!r} or 'en'")  # fmt: skip
        side = out[row_lang]
        side.ids.append(sid)
        side.sentences.append(sentence)
        side.gold.append(gold.split())
    for name, side in out.items():
        if not side.ids:
            raise XtunerError(f"task {task.name!r} {split}/{lang}: no {name} sentences")
    return out[lang], out["en"]


def tatoeba_scores(task: Task, lang: str, other: Side, english: Side,
                   collect: dict | None = None) -> dict[str, float]:  # fmt: skip
    assert other.vectors is not None and english.vectors is not None
    pos_other = {sid: i for i, sid in enumerate(other.ids)}
    pos_en = {sid: i for i, sid in enumerate(english.ids)}
    keep_en = [i for i, g in enumerate(english.gold) if g and g[0] in pos_other]
    keep_other = [i for i, g in enumerate(other.gold) if g and g[0] in pos_en]
    if not keep_en:
        raise XtunerError(f"task {task.name!r} {lang}: no English sentence has a gold translation")
    to_other = search.tatoeba_predictions(other.vectors, english.vectors[keep_en])
    refs = [pos_other[english.gold[i][0]] for i in keep_en]
    scores = task.metric(list(to_other), refs, lang)
    if collect is not None:  # per English sentence: the retrieved and the gold row (xtuner.trial.predictions)
        from xtuner.trial.evaluate import Predictions

        collect[lang] = Predictions([english.ids[i] for i in keep_en], [int(p) for p in to_other], refs)
    to_en = search.nearest(other.vectors[keep_other], english.vectors)
    back = task.metric(list(to_en), [pos_en[other.gold[i][0]] for i in keep_other], lang)
    return {**scores, "accuracy_to_en": back["accuracy"]}


def _candidates(other: Side, english: Side) -> dict[tuple[str, str], float]:
    assert other.vectors is not None and english.vectors is not None
    return search.bucc_candidates(other.vectors, other.ids, other.sentences,
                                  english.vectors, english.ids, english.sentences)  # fmt: skip


def _gold_pairs(other: Side) -> set[tuple[str, str]]:
    return {(sid, e) for sid, gold in zip(other.ids, other.gold, strict=True) for e in gold}


def evaluate_retrieval(
    task: Task, encoder: Encoder, languages: list[str], ctx: LoadContext | None = None, *, split: str = "test",
    collect: dict | None = None,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """{lang: metrics} for every non-English language of `languages` (English is the pivot); `collect` receives the
    per-example predictions of the tatoeba family ({lang: Predictions}; BUCC's F1 has no per-example form)."""
    if task.head != HeadType.RETRIEVAL:
        raise XtunerError(f"task {task.name!r} is not a retrieval task (head {task.head})")
    ctx = ctx or LoadContext()
    out: dict[str, dict[str, float]] = {}
    for lang in sorted(set(languages) - {task.source_lang}):
        task.check_language(lang)
        other, english = sides(task, split, lang, ctx)
        for side in (other, english):
            side.vectors = encoder.vectors(side.sentences, task.family)
        if task.family == "tatoeba":
            out[lang] = tatoeba_scores(task, lang, other, english, collect)
        elif task.family == "bucc":
            out[lang] = bucc_scores(task, lang, other, english, encoder, ctx, split)
        else:
            raise XtunerError(f"task {task.name!r}: no retrieval recipe for family {task.family!r} (tatoeba, bucc)")
    if not out:
        raise XtunerError(f"task {task.name!r}: no language to evaluate besides the pivot {task.source_lang!r}")
    return out


def bucc_scores(task: Task, lang: str, other: Side, english: Side, encoder: Encoder, ctx: LoadContext,
                split: str) -> dict[str, float]:  # fmt: skip
    if split == "validation":
        dev_cands = test_cands = _candidates(other, english)
        dev_gold = test_gold = _gold_pairs(other)
    else:
        dev_other, dev_en = sides(task, "validation", lang, ctx)
        for side in (dev_other, dev_en):
            side.vectors = encoder.vectors(side.sentences, task.family)
        dev_cands, dev_gold = _candidates(dev_other, dev_en), _gold_pairs(dev_other)
        test_cands, test_gold = _candidates(other, english), _gold_pairs(other)
    if not dev_gold or not test_gold:
        raise XtunerError(f"task {task.name!r} {lang}: no gold pairs to choose the threshold on or to score")
    threshold = search.optimize_threshold(dev_cands, dev_gold)
    predicted = search.extract(test_cands, threshold)
    return {**task.metric(predicted, sorted(test_gold), lang), "threshold": threshold}
