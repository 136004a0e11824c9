"""What the representation analysis (`run`, `outputs`) and the retrieval analysis (`retrieval`) share: the data
context, the per-encoder CSV table and the log-back of each analysed run's numbers to MLflow."""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from xtuner.analysis.representations.subjects import Subject
from xtuner.tasks import LoadContext

CSV_COLUMNS = ("encoder", "method", "model", "seed", "run_id", "lang")
METRICS_PER_CALL = 1000  # MLflow's limit of metrics in one log_batch call

Scores = Mapping[str, Mapping[str, Mapping[str, float]]]  # subject label -> language (and avg) -> metric -> value


def load_context(data_dir: str | None) -> LoadContext:
    return LoadContext(data_dir=Path(data_dir).expanduser() if data_dir else None)


def encoder_csv(subjects: Iterable[Subject], scores: Scores, metrics: Iterable[str]) -> str:
    """One row per encoder and language: who it is (``CSV_COLUMNS``) and its `metrics` to 4 decimals (``nan``
    where one is missing)."""
    metrics = list(metrics)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*CSV_COLUMNS, *metrics])
    for s in subjects:
        for lang, values in scores[s.label].items():
            w.writerow([s.label, s.method, s.model_name, "" if s.seed is None else s.seed,
                        (s.ref.run_id if s.ref else "") or "", lang, *(f"{values.get(m, math.nan):.4f}" for m in metrics)])  # fmt: skip
    return buf.getvalue()


def log_back(subjects: Iterable[Subject], tracking_uri: str, metrics_of: Callable[[Subject], Mapping[str, float]],
             files: Callable[[object, str], None]) -> list[str]:  # fmt: skip
    """Log ``metrics_of(subject)`` (the finite values, step 0, in batches of at most ``METRICS_PER_CALL``) to the
    MLflow run of every subject that has one; then ``files(client, run_id)`` once per holder: the run's sweep
    parent, or the run itself when it has no parent. Returns the run ids whose metrics were written."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    now = int(time.time() * 1000)
    written, holders = [], set()
    for s in subjects:
        if not (s.ref and s.ref.run_id):
            continue
        items = [Metric(k, float(v), now, 0) for k, v in sorted(metrics_of(s).items()) if math.isfinite(v)]
        for i in range(0, len(items), METRICS_PER_CALL):
            client.log_batch(s.ref.run_id, metrics=items[i : i + METRICS_PER_CALL])
        holders.add(client.get_run(s.ref.run_id).data.tags.get("mlflow.parentRunId") or s.ref.run_id)
        written.append(s.ref.run_id)
    for run_id in sorted(holders):
        files(client, run_id)
    return written
