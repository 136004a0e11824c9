"""Zero-shot test accuracy of the study's trials beside their alignment: mean ± sd over seeds per task and method,
read from this folder's MLflow database (the sweep `repr`). Run by run.sh; prints markdown."""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict

from mlflow.tracking import MlflowClient

LANGS = ["en", "s1", "s2", "s3", "s4", "s5", "s6"]
ALIGN = ("pos", "neg", "acc1_en_to_x")


def fmt(values: list[float]) -> str:
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def main(uri: str = "sqlite:///mlflow.db", sweep: str = "repr") -> None:
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = [r for r in client.search_runs(exps, f"tags.`xtuner.sweep` = '{sweep}'", max_results=1000)
            if r.data.tags.get("mlflow.parentRunId")]  # fmt: skip
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for r in runs:
        groups[r.data.tags["xtuner.task"], r.data.tags["xtuner.method"]].append(r.data.metrics)
    for task in sorted({t for t, _ in groups}):
        print(f"## {task}: zero-shot test accuracy (300 examples per language) and end-of-trial alignment\n")
        cols = [*LANGS, "others avg", *(f"align avg {m}" for m in ALIGN)]
        print("| method | seeds | " + " | ".join(cols) + " |")
        print("|---|---|" + "---|" * len(cols))
        for (t, method), ms in sorted(groups.items()):
            if t != task:
                continue
            cells = [fmt([m[f"test/{lang}/accuracy"] for m in ms]) for lang in LANGS]
            others = [statistics.mean(m[f"test/{lang}/accuracy"] for lang in LANGS[1:]) for m in ms]
            cells.append(fmt(others))
            cells += [fmt([m[f"analysis/representations/avg/{a}"] for m in ms]) for a in ALIGN]
            print(f"| {method} | {len(ms)} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main(*sys.argv[1:])
