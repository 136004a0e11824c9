"""Best configuration per task, method and model, chosen on English dev only.

A configuration is the runs of one task, method (arm) and model whose settings are equal except for the seed
(`Run.config`), possibly from several sweeps. Its dev score is the mean over its done runs of the best English dev
main metric of each run (``best/dev/en/main``, else ``best/dev/en/<metric>``). The best configuration of a task,
method and model is the one with the highest dev score; test numbers never enter the choice. Runs that are not
done (pruned, failed, running) are counted per configuration and per method, never averaged in.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from xtuner.analysis.report.runs import STATUSES, Run

SHOWN_ALWAYS = ("lr", "psl")


@dataclass
class Config:
    task: str
    method: str
    model: str
    settings: dict[str, str]
    runs: list[Run] = field(default_factory=list)
    label: str = ""

    @property
    def done(self) -> list[Run]:
        return [r for r in self.runs if r.status == "done"]

    @property
    def dev(self) -> float | None:
        values = [r.dev for r in self.done if r.dev is not None]
        return statistics.fmean(values) if values else None

    def values(self, lang: str) -> list[float]:
        """The per-seed values of `lang` (or avg/others/gap) over the done runs that logged it."""
        return [v for r in self.done if (v := r.score(lang)) is not None]

    def languages(self) -> list[str]:
        langs: set[str] = set()
        for r in self.done:
            langs |= set(r.languages)
        return sorted(langs, key=lambda x: (x != "en", x))

    def avg_over_languages(self) -> list[float]:
        """Per seed, the mean over languages (``test/avg/main`` or its metric)."""
        return self.values("avg")


@dataclass
class Choice:
    """The best configuration (None when no run is done) of one task, method and model, and what else ran."""

    task: str
    method: str
    model: str
    best: Config | None
    configs: list[Config]

    @property
    def counts(self) -> dict[str, int]:
        c = {s: 0 for s in STATUSES}
        for cfg in self.configs:
            for r in cfg.runs:
                c[r.status] += 1
        return c

    @property
    def main_metric(self) -> str:
        return self.configs[0].runs[0].main_metric


def group_configs(runs: list[Run]) -> list[Config]:
    by: dict[str, Config] = {}
    for r in runs:
        cfg = by.setdefault(r.config, Config(r.task, r.method, r.model, r.settings))
        cfg.runs.append(r)
    configs = list(by.values())
    _labels(configs)
    return configs


def _labels(configs: list[Config]) -> None:
    """A configuration's label: the settings that differ between the configurations of its task, method and
    model (lr and psl always when set)."""
    groups: dict[tuple, list[Config]] = defaultdict(list)
    for c in configs:
        groups[(c.task, c.method, c.model)].append(c)
    for group in groups.values():
        keys = sorted({k for c in group for k in c.settings})
        varying = [k for k in keys if len({c.settings.get(k) for c in group}) > 1]
        shown = [k for k in keys if k in varying or k in SHOWN_ALWAYS]
        for c in group:
            c.label = " ".join(f"{k}={_short(c.settings[k])}" for k in shown if k in c.settings) or "-"


def _short(value: str) -> str:
    try:
        f = float(value)
    except ValueError:
        return value
    return f"{f:g}" if math.isfinite(f) else value


def choose(runs: list[Run]) -> list[Choice]:
    """One Choice per (task, method, model), sorted by task, then fine-tuning first, then method name."""
    groups: dict[tuple, list[Config]] = defaultdict(list)
    for c in group_configs(runs):
        groups[(c.task, c.method, c.model)].append(c)
    out = []
    for (task, method, model), configs in groups.items():
        scored = [c for c in configs if c.dev is not None]
        best = max(scored, key=lambda c: (c.dev, len(c.done))) if scored else None
        out.append(Choice(task, method, model, best, configs))
    out.sort(key=lambda ch: (ch.task, method_order(ch.method), ch.model))
    return out


def method_order(method: str) -> tuple[int, str]:
    return (0 if method == "finetune" else 1, method)


def mean_sd(values: list[float]) -> tuple[float | None, float | None, int]:
    """Mean, sample sd (None for one value) and n."""
    if not values:
        return None, None, 0
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else None
    return mean, sd, len(values)
