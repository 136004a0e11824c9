"""Task registry.

Every module in this package registers its tasks at import time with :func:`register_task`; they are
discovered automatically (``pkgutil``), so adding a task is one new file. Tasks from outside the package
register through the ``xtuner.tasks`` entry-point group (the entry point is a module to import).
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from xtuner.registry import Registry
from xtuner.tasks.base import SPLITS, HeadType, LoadContext, Task

TASKS: Registry[Task] = Registry("task")
_loaded = False


def register_task(task: Task) -> Task:
    return TASKS.add(task.name, task)


def _discover() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in ("base", "schemas") and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    for ep in entry_points(group="xtuner.tasks"):
        ep.load()


def get_task(name: str) -> Task:
    _discover()
    return TASKS.get(name)


def task_names() -> list[str]:
    _discover()
    return TASKS.names()


__all__ = ["SPLITS", "TASKS", "HeadType", "LoadContext", "Task", "get_task", "register_task", "task_names"]
