"""Task registry.

Every module in this package registers its tasks at import time with :func:`register_task`; they are
discovered automatically (``pkgutil``), so adding a task is one new file. Tasks from outside the package
register through the ``xtuner.tasks`` entry-point group (the entry point is a module to import).
"""

from __future__ import annotations

from xtuner.registry import Registry
from xtuner.tasks.base import EVAL_SPLITS, SPLITS, HeadType, LoadContext, Task, parse_split_source

TASKS: Registry[Task] = Registry(
    "task", package=__name__, path=__path__, group="xtuner.tasks", skip=("base", "schemas")
)


def register_task(task: Task) -> Task:
    return TASKS.add(task.name, task)


def get_task(name: str) -> Task:
    return TASKS.get(name)


def task_names() -> list[str]:
    return TASKS.names()


__all__ = [
    "EVAL_SPLITS", "SPLITS", "TASKS", "HeadType", "LoadContext", "Task", "get_task", "parse_split_source",
    "register_task", "task_names",
]  # fmt: skip
