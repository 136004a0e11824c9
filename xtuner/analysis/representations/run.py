"""`analyse`: the whole representation analysis of some trained encoders (and the untuned baseline) on one
sentence-pair task: resolve the sources, load the parallel rows once, encode them with every encoder, measure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xtuner.analysis.representations.common import load_context
from xtuner.analysis.representations.data import DEFAULT_ROWS, ParallelRows, check_pair_task, load_parallel
from xtuner.analysis.representations.measure import encode, measure
from xtuner.analysis.representations.subjects import Subject, assign_groups, load_subject, resolve, untuned
from xtuner.errors import XtunerError, unknown_name
from xtuner.tasks import Task, get_task


@dataclass
class Analysis:
    task: str
    rows: ParallelRows
    subjects: list[Subject]
    metrics: dict[str, dict[str, dict[str, float]]]  # subject label -> language (and "avg") -> metric -> value
    vectors: dict[str, dict[str, np.ndarray]]  # subject label -> language -> [N, H]
    notes: list[str] = field(default_factory=list)


def subjects_for(sources: list[str], *, tracking_uri: str | None = None, model: str | None = None,
                 task: str | None = None) -> tuple[list[Subject], list[str]]:  # fmt: skip
    """The trained encoders of `sources` (a sweep's: those of `task`, when given) and one untuned baseline per
    backbone they use (or `model`)."""
    refs, notes = resolve(sources, tracking_uri, task)
    trained = [load_subject(r) for r in refs]
    backbones = list(dict.fromkeys([s.model_name for s in trained] + ([model] if model else [])))
    if not backbones:
        raise XtunerError("nothing to analyse: give run ids, a sweep name or kept-weights folders, or --model for "
                          "the untuned model alone")  # fmt: skip
    baselines = [untuned(m) for m in backbones]
    if len(backbones) > 1:
        for b in baselines:
            b.label = f"untuned {b.model_name}"
    _unique_labels(trained)
    assign_groups(baselines + trained)
    return baselines + trained, notes


def _unique_labels(subjects: list[Subject]) -> None:
    seen: dict[str, int] = {}
    for s in subjects:
        seen[s.label] = seen.get(s.label, 0) + 1
    for s in subjects:
        if seen[s.label] > 1 and s.ref is not None:
            s.label = f"{s.label} ({(s.ref.run_id or s.ref.location)[-8:]})"


def task_of(subjects: list[Subject], task: str | None) -> str:
    if task:
        return task
    tasks = sorted({s.task for s in subjects if s.task})
    if len(tasks) != 1:
        raise XtunerError("give --task: " + ("the encoders were trained on different tasks " + ", ".join(tasks)
                                             if tasks else "no trained encoder names its task"))  # fmt: skip
    return tasks[0]


def check_request(task: Task, languages: list[str] | None, plot_lang: str | None) -> None:
    """Refuse a bad request before anything is loaded or encoded: a task that is not a sentence pair, an unknown
    language, a plot language that is not among the analysed ones (English is never one: it is the pivot)."""
    check_pair_task(task)
    for lang in languages or ():
        task.check_language(lang)
    analysed = sorted(set(languages or task.languages) - {task.source_lang})
    if plot_lang is not None and plot_lang not in analysed:
        raise unknown_name("plot language", plot_lang, analysed, where="(--plot-lang: one of the analysed languages)")


def analyse(
    sources: list[str], *, task: str | None = None, languages: list[str] | None = None, rows: int = DEFAULT_ROWS,
    data_dir: str | None = None, tracking_uri: str | None = None, model: str | None = None, seed: int = 0,
    batch_size: int = 64, plot_lang: str | None = None,
) -> Analysis:  # fmt: skip
    if task:  # checked before any model is loaded; a task read from the runs, once they are
        check_request(get_task(task), languages, plot_lang)
    subjects, notes = subjects_for(sources, tracking_uri=tracking_uri, model=model, task=task)
    name = task_of(subjects, task)
    t = get_task(name)
    if not task:
        check_request(t, languages, plot_lang)
    ctx = load_context(data_dir)
    parallel = load_parallel(t, languages or list(t.languages), ctx, rows=rows)
    metrics: dict[str, Any] = {}
    vectors: dict[str, Any] = {}
    for s in subjects:
        vectors[s.label] = encode(parallel, s.model, s.tokenizer, batch_size=batch_size)
        metrics[s.label] = measure(parallel, vectors[s.label], t.source_lang, seed=seed)
    return Analysis(name, parallel, subjects, metrics, vectors, notes)
