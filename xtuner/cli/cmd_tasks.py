"""`xtuner tasks`: list the registered tasks with their languages and head types."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list tasks with their languages and head types")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xtuner.tasks import get_task, task_names

    tasks = [get_task(n) for n in task_names()]
    if args.json:
        print(json.dumps([t.describe() for t in tasks], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="xtuner tasks")
    for col in ("task", "head", "metric", "source"):
        table.add_column(col, no_wrap=True)
    table.add_column("languages", overflow="fold")
    for t in tasks:
        table.add_row(
            t.name, str(t.head), t.main_metric, t.source_lang, f"{len(t.languages)}: " + " ".join(t.languages)
        )
    Console().print(table)
    return 0
