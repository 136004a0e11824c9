"""`xtuner analyze retrieval`: trained encoders (and the untuned baseline) on a retrieval task, XTREME's recipe
(``xtuner.retrieval.evaluate``); each run gets ``analysis/retrieval/<task>/<lang>/<metric>`` (and ``avg``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xtuner.analysis.representations.common import encoder_csv, load_context, log_back
from xtuner.analysis.representations.run import subjects_for
from xtuner.analysis.representations.subjects import Subject
from xtuner.errors import XtunerError
from xtuner.retrieval.evaluate import Encoder, evaluate_retrieval
from xtuner.tasks import HeadType, get_task

PREFIX = "analysis/retrieval"


@dataclass
class RetrievalAnalysis:
    task: str
    subjects: list[Subject]
    scores: dict[str, dict[str, dict[str, float]]]  # subject label -> language (and avg) -> metric -> value
    notes: list[str] = field(default_factory=list)


def analyse_retrieval(sources: list[str], *, task: str, languages: list[str] | None = None,
                      data_dir: str | None = None, tracking_uri: str | None = None, model: str | None = None,
                      layer: int | None = None, split: str = "test", batch_size: int = 64) -> RetrievalAnalysis:  # fmt: skip
    t = get_task(task)
    if t.head != HeadType.RETRIEVAL:
        raise XtunerError(f"task {task!r} is not a retrieval task; retrieval tasks: tatoeba, bucc2018, synth-tatoeba, "
                          "synth-bucc")  # fmt: skip
    subjects, notes = subjects_for(sources, tracking_uri=tracking_uri, model=model)
    ctx = load_context(data_dir)
    langs = languages or list(t.languages)
    scores = {}
    for s in subjects:
        per = evaluate_retrieval(t, Encoder(s.model, s.tokenizer, layer=layer, batch_size=batch_size), langs, ctx,
                                 split=split)  # fmt: skip
        metrics = sorted({m for v in per.values() for m in v})
        per["avg"] = {m: float(np.mean([v[m] for v in per.values() if m in v])) for m in metrics}
        scores[s.label] = per
    return RetrievalAnalysis(task, subjects, scores, notes)


def table_csv(a: RetrievalAnalysis) -> str:
    return encoder_csv(a.subjects, a.scores, sorted({m for per in a.scores.values() for v in per.values() for m in v}))


def log_to_mlflow(a: RetrievalAnalysis, tracking_uri: str) -> list[str]:
    """Each run's ``analysis/retrieval/<task>/<lang>/<metric>``; the table once per sweep (its parent run), as for
    the representations."""
    return log_back(
        a.subjects, tracking_uri,
        lambda s: {f"{PREFIX}/{a.task}/{lang}/{m}": v for lang, per in a.scores[s.label].items() for m, v in per.items()},
        lambda client, run_id: client.log_text(run_id, table_csv(a), f"{PREFIX}/{a.task}/table.csv"),
    )  # fmt: skip
