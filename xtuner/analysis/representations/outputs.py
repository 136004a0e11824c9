"""What the representation analysis writes: ``table.csv`` (every encoder × language), ``summary.md`` (per
configuration, mean ± sd over seeds), ``metrics.json`` and the plots, into the output folder; to MLflow, each
analysed run's own numbers as its metrics and the files once per sweep (`log_to_mlflow`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from xtuner.analysis.representations.common import encoder_csv, log_back
from xtuner.analysis.representations.maths import METRICS
from xtuner.analysis.representations.measure import PREFIX, flat
from xtuner.analysis.representations.plots import by_method, heatmap, projection
from xtuner.analysis.representations.run import Analysis
from xtuner.analysis.representations.subjects import Subject
from xtuner.tasks import get_task

SUMMARY_METRICS = METRICS
PER_LANGUAGE_METRICS = ("rel_diff", "acc1_en_to_x")


def _fmt(v: float) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.1f}"


def _mean_sd(values: list[float]) -> str:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{np.mean(vals):.1f} ± {np.std(vals, ddof=1):.1f}"


def table_csv(a: Analysis) -> str:
    return encoder_csv(a.subjects, a.metrics, METRICS)


def summary_md(a: Analysis, published: str = "") -> str:
    groups = by_method(a)
    rows = a.rows
    lines = [f"# Representation alignment with English: {a.task}", "",
             f"{len(rows.ids)} parallel train rows (dropped from the first rows: {rows.dropped.get('missing', 0)} "
             f"missing in a language, {rows.dropped.get('unlabelled', 0)} labelled -1); languages "
             f"{', '.join(rows.languages)}. Vectors: the last layer's <s> state of the pair encoded jointly. pos / neg: "
             "100 x mean cosine of parallel / non-parallel pairs; rel_diff = 100 (pos - neg) / neg; acc1: retrieval "
             "accuracy@1 among the rows. Mean ± sd over seeds.", "",
             "## Average over languages", "",
             "| method | seeds | " + " | ".join(SUMMARY_METRICS) + " |",
             "|---|---|" + "---|" * len(SUMMARY_METRICS)]  # fmt: skip
    for method, labels in groups.items():
        cells = [_mean_sd([a.metrics[s]["avg"][m] for s in labels]) for m in SUMMARY_METRICS]
        lines.append(f"| {method} | {len(labels)} | " + " | ".join(cells) + " |")
    for metric in PER_LANGUAGE_METRICS:
        langs = [*rows.languages, "avg"]
        lines += ["", f"## {metric} per language", "", "| method | " + " | ".join(langs) + " |",
                  "|---|" + "---|" * len(langs)]  # fmt: skip
        for method, labels in groups.items():
            lines.append(f"| {method} | " + " | ".join(_mean_sd([a.metrics[s][lang][metric] for s in labels])
                                                        for lang in langs) + " |")  # fmt: skip
    if a.notes:
        lines += ["", "Skipped: " + "; ".join(a.notes)]
    if published:
        lines += ["", published]
    return "\n".join(lines) + "\n"


def plot_language(a: Analysis, lang: str | None) -> str:
    """The language of the projection plot: the one asked for, else the farthest (last) analysed language."""
    if lang:
        if lang not in a.rows.languages:
            from xtuner.errors import unknown_name

            raise unknown_name("plot language", lang, a.rows.languages)
        return lang
    return a.rows.languages[-1]


def files(a: Analysis, *, plot_lang: str | None = None, projection_kind: str = "pca") -> dict[str, bytes]:
    lang = plot_language(a, plot_lang)
    metrics = {s.label: {"method": s.method, "model": s.model_name, "seed": s.seed,
                         "run_id": s.ref.run_id if s.ref else None, "weights": s.ref.location if s.ref else None,
                         "metrics": a.metrics[s.label]} for s in a.subjects}  # fmt: skip
    payload = {"task": a.task, "rows": len(a.rows.ids), "dropped": a.rows.dropped, "languages": a.rows.languages,
               "encoders": metrics}  # fmt: skip
    return {
        "table.csv": table_csv(a).encode(),
        "summary.md": summary_md(a).encode(),
        "metrics.json": json.dumps(payload, indent=2, allow_nan=True).encode(),
        "heatmap.png": heatmap(a),
        f"projection_{lang}.png": projection(a, lang, kind=projection_kind, label_names=get_task(a.task).labels),
    }


def write(out: Path, outputs: dict[str, bytes]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in outputs.items():
        (out / name).write_bytes(data)
        paths.append(out / name)
    return paths


def log_to_mlflow(a: Analysis, out: Path, tracking_uri: str) -> list[str]:
    """Log each analysed run's own numbers as its metrics (``analysis/representations/<lang>/<metric>``; with
    ``<task>/`` after the prefix when the run was trained on another task), and the output files once per sweep,
    to its parent run (to the run itself when it has no parent), under ``analysis/representations/<task>/``.
    Returns the run ids whose metrics were written."""

    def metrics_of(s: Subject) -> dict[str, float]:
        prefix = PREFIX if s.task in (None, a.task) else f"{PREFIX}/{a.task}"
        return {**flat(a.metrics[s.label], prefix), f"{prefix}/rows": float(len(a.rows.ids))}

    return log_back(a.subjects, tracking_uri, metrics_of,
                    lambda client, run_id: client.log_artifacts(run_id, str(out), f"{PREFIX}/{a.task}"))  # fmt: skip
