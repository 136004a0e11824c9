"""Load every split a sweep needs, once, so that datasets caches them before any trial starts.

For each task: train/en, the English dev split its trials select on (``validation``, or e.g. ``mnli_matched`` for
xnli under the ``mpt`` protocol), and the evaluation split (``test``, or ``validation`` with ``eval_split:
validation``) for each evaluation language (all the task's languages unless `languages` narrows them). Every load
goes through ``Task.load``, so the schema is checked, and each split is read from its own source when the context
names one (``LoadContext.splits``). All splits are tried; problems are collected and raised together as one
XtunerError, so one run of ``xtuner data prepare`` lists every missing file or bad label, and nothing is reported
ready that did not load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from xtuner.errors import XtunerError, unknown_name
from xtuner.tasks import get_task
from xtuner.tasks.base import LoadContext, Task

Prepared = tuple[Task, str, str, int]  # (task, split, lang, rows)


@dataclass(frozen=True)
class Job:
    """One task's data as a trial reads it: where from, which test languages, which evaluation and dev split."""

    task: str
    ctx: LoadContext
    languages: tuple[str, ...] | None = None  # None = all of the task's languages
    eval_split: str = "test"
    dev_split: str = "validation"


def needed_splits(
    task: Task, languages: Iterable[str] | None = None, eval_split: str = "test", dev_split: str = "validation"
) -> list[tuple[str, str]]:
    """(split, lang) pairs a zero-shot trial of `task` reads, in a deterministic order, without repeats."""
    task.check_dev_split(dev_split)
    langs = sorted(set(languages)) if languages is not None else list(task.languages)
    task.check_eval_split(eval_split, langs)
    for lang in langs:
        task.check_language(lang)
    src = task.source_lang
    if task.head == "retrieval":  # no training; English is the pivot; BUCC chooses its threshold on validation
        targets = [lang for lang in langs if lang != src]
        extra = [("validation", lang) for lang in targets] if task.family == "bucc" else []
        return list(dict.fromkeys(extra + [(eval_split, lang) for lang in targets]))
    pairs = [("train", src), (dev_split, src)] + [(eval_split, lang) for lang in langs]
    return list(dict.fromkeys(pairs))


def prepare_jobs(jobs: Iterable[Job], on_split: Callable[[int, int, str], None] | None = None) -> list[Prepared]:
    """Load (and cache) every split of every job; one XtunerError lists every split that failed. `on_split(i, n,
    line)` hears about each split as it is done (or failed)."""
    plan = []
    for job in jobs:
        task = get_task(job.task)
        pairs = needed_splits(task, job.languages, job.eval_split, job.dev_split)
        plan += [(task, split, lang, job.ctx) for split, lang in pairs if (task, split, lang, job.ctx) not in plan]
    done: list[Prepared] = []
    problems: list[str] = []
    for i, (task, split, lang, ctx) in enumerate(plan, 1):
        try:
            done.append((task, split, lang, len(task.load(split, lang, ctx))))
            line = f"{task.name:14s} {split:10s} {lang:4s} {done[-1][3]:>8,d} rows"
        except XtunerError as e:
            problems.append(f"{task.name} {split}/{lang}: {e}")
            line = f"{task.name:14s} {split:10s} {lang:4s} failed: {str(e).splitlines()[0]}"
        if on_split is not None:
            on_split(i, len(plan), line)
    if problems:
        raise XtunerError(
            f"{len(problems)} of {len(plan)} splits failed to load:\n  " + "\n  ".join(problems)
        )
    return done


def prepare(
    task_names: list[str], ctx: LoadContext, languages: Mapping[str, Iterable[str]] | None = None,
    eval_split: str = "test",
) -> list[Prepared]:
    """Load (and cache) every split of `task_names`; `languages` maps a task name to its test languages."""
    names = sorted(set(task_names))
    for name in names:
        get_task(name)  # an unknown name fails before anything loads
    languages = dict(languages or {})
    for key in languages:
        if key not in names:
            raise unknown_name("task in the languages mapping", key, names)
    return prepare_jobs(
        Job(n, ctx, tuple(languages[n]) if n in languages else None, eval_split) for n in names
    )
