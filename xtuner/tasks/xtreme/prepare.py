"""Load every split a sweep needs, once, so that datasets caches them before any trial starts.

For each task: train/en and validation/en (the source language), and test for each evaluation language (all the
task's languages unless `languages` narrows them). Every load goes through ``Task.load``, so the schema is checked.
All splits are tried; problems are collected and raised together as one XtunerError, so one run of
``xtuner data prepare`` lists every missing file or bad label, and nothing is reported ready that did not load.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from xtuner.errors import XtunerError, unknown_name
from xtuner.tasks import get_task
from xtuner.tasks.base import LoadContext, Task

Prepared = tuple[Task, str, str, int]  # (task, split, lang, rows)


def needed_splits(task: Task, languages: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """(split, lang) pairs a zero-shot trial of `task` reads, in a deterministic order."""
    langs = sorted(set(languages)) if languages is not None else list(task.languages)
    for lang in langs:
        task.check_language(lang)
    src = task.source_lang
    return [("train", src), ("validation", src)] + [("test", lang) for lang in langs]


def prepare(
    task_names: list[str], ctx: LoadContext, languages: Mapping[str, Iterable[str]] | None = None
) -> list[Prepared]:
    """Load (and cache) every split of `task_names`; `languages` maps a task name to its test languages."""
    names = sorted(set(task_names))
    tasks = [get_task(n) for n in names]
    languages = dict(languages or {})
    for key in languages:
        if key not in names:
            raise unknown_name("task in the languages mapping", key, names)
    plan = [(t, split, lang) for t in tasks for split, lang in needed_splits(t, languages.get(t.name))]
    done: list[Prepared] = []
    problems: list[str] = []
    for task, split, lang in plan:
        try:
            done.append((task, split, lang, len(task.load(split, lang, ctx))))
        except XtunerError as e:
            problems.append(f"{task.name} {split}/{lang}: {e}")
    if problems:
        raise XtunerError(
            f"{len(problems)} of {len(plan)} splits failed to load:\n  " + "\n  ".join(problems)
        )
    return done
