"""`xtuner analyze retrieval`: trained encoders (and the untuned baseline) on a retrieval task, XTREME's recipe
(``xtuner.retrieval.evaluate``); each run gets ``analysis/retrieval/<task>/<lang>/<metric>`` (and ``avg``)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xtuner.analysis.representations.run import subjects_for
from xtuner.analysis.representations.subjects import Subject
from xtuner.errors import XtunerError
from xtuner.retrieval.evaluate import Encoder, evaluate_retrieval
from xtuner.tasks import HeadType, LoadContext, get_task

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
    ctx = LoadContext(data_dir=Path(data_dir).expanduser() if data_dir else None)
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
    metrics = sorted({m for per in a.scores.values() for v in per.values() for m in v})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["encoder", "method", "model", "seed", "run_id", "lang", *metrics])
    for s in a.subjects:
        for lang, v in a.scores[s.label].items():
            w.writerow([s.label, s.method, s.model_name, "" if s.seed is None else s.seed,
                        (s.ref.run_id if s.ref else "") or "", lang, *(f"{v.get(m, math.nan):.4f}" for m in metrics)])  # fmt: skip
    return buf.getvalue()


def log_to_mlflow(a: RetrievalAnalysis, tracking_uri: str) -> list[str]:
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    now, written, holders = int(time.time() * 1000), [], set()
    for s in a.subjects:
        if not (s.ref and s.ref.run_id):
            continue
        items = [Metric(f"{PREFIX}/{a.task}/{lang}/{m}", float(v), now, 0)
                 for lang, per in a.scores[s.label].items() for m, v in per.items() if math.isfinite(v)]  # fmt: skip
        client.log_batch(s.ref.run_id, metrics=items)
        holders.add(client.get_run(s.ref.run_id).data.tags.get("mlflow.parentRunId") or s.ref.run_id)
        written.append(s.ref.run_id)
    for run_id in sorted(holders):  # the table once per sweep (its parent run), as for the representations
        client.log_text(run_id, table_csv(a), f"{PREFIX}/{a.task}/table.csv")
    return written
