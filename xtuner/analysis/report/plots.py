"""The report's plots (matplotlib `Figure` without pyplot, so the Agg backend; PNG bytes):

- ``heatmap_<task>.png``: methods (best configuration, seed mean) × languages, main metric, values written in;
- ``gap.png``: transfer gap (English minus the mean of the others) per task and method, bars with ± sample sd;
- ``distance_<task>.png``: main metric against the language's distance from English, where the task knows one
  (``Task.language_info[lang]["distance_rank"]``: the synthetic suite's near → far languages), one line per method;
- ``dev_<task>.png``: the English dev curve (``dev/en/...`` per epoch or eval step) of each method's chosen
  configuration, one thin line per seed and their mean.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict

import numpy as np

from xtuner.analysis.report.select import Choice, mean_sd
from xtuner.analysis.report.tables import row_label

DPI = 110


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _done(choices: list[Choice]) -> list[Choice]:
    return [c for c in choices if c.best is not None and c.best.done]


def _names(choices: list[Choice]) -> list[str]:
    several = len({c.model for c in choices}) > 1
    return [row_label(c, several) for c in choices]


def heatmap(task: str, choices: list[Choice]) -> bytes | None:
    done = _done(choices)
    if not done:
        return None
    langs: list[str] = []
    for c in done:
        langs += [x for x in c.best.languages() if x not in langs]  # type: ignore[union-attr]
    langs.sort(key=lambda x: (x != "en", x))
    cols = [*langs, "avg"]
    grid = np.full((len(done), len(cols)), np.nan)
    for i, c in enumerate(done):
        for j, lang in enumerate(cols):
            m = mean_sd(c.best.values(lang))[0]  # type: ignore[union-attr]
            grid[i, j] = np.nan if m is None else m
    fig = _figure(max(4.0, 0.75 * len(cols) + 2.2), 0.6 * len(done) + 1.6)
    ax = fig.add_subplot()
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(done)), _names(done))
    finite = grid[np.isfinite(grid)]
    mid = float(finite.mean()) if finite.size else 0.0
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=8,
                        color="black" if grid[i, j] > mid else "white")  # fmt: skip
    ax.set_title(f"{task}: {done[0].main_metric} per language (seed mean)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def gap_bars(choices: list[Choice]) -> bytes | None:
    done = _done(choices)
    if not done:
        return None
    tasks = sorted({c.task for c in done})
    names = sorted(set(_names(done)), key=lambda n: (not n.startswith("finetune"), n))
    label = dict(zip([id(c) for c in done], _names(done), strict=True))
    width = 0.8 / max(1, len(names))
    fig = _figure(max(4.5, 1.6 * len(tasks) + 2.0), 3.4)
    ax = fig.add_subplot()
    for k, name in enumerate(names):
        means, sds = [], []
        for t in tasks:
            c = next((c for c in done if c.task == t and label[id(c)] == name), None)
            m, sd, _ = mean_sd(c.best.values("gap")) if c else (None, None, 0)  # type: ignore[union-attr]
            means.append(np.nan if m is None else m)
            sds.append(0.0 if sd is None else sd)
        x = np.arange(len(tasks)) + (k - (len(names) - 1) / 2) * width
        ax.bar(x, means, width, yerr=sds, capsize=3, label=name)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("English minus others (points)")
    ax.set_title("Transfer gap per task and method (± sd over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def distance(task: str, choices: list[Choice], language_info: dict) -> bytes | None:
    done = _done(choices)
    ranks = {lang: info.get("distance_rank") for lang, info in (language_info or {}).items()}
    if not done or not any(r is not None for r in ranks.values()):
        return None
    fig = _figure(5.2, 3.4)
    ax = fig.add_subplot()
    ticks: dict[float, str] = {}
    for c, name in zip(done, _names(done), strict=True):
        points = []
        for lang in c.best.languages():  # type: ignore[union-attr]
            r = ranks.get(lang)
            m, sd, _ = mean_sd(c.best.values(lang))  # type: ignore[union-attr]
            if r is not None and m is not None:
                points.append((float(r), m, sd or 0.0))
                ticks[float(r)] = lang
        if points:
            points.sort()
            xs, ys, es = zip(*points, strict=True)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=name)
    if not ticks:
        return None
    ax.set_xticks(sorted(ticks), [f"{ticks[r]}\n{int(r)}" for r in sorted(ticks)])
    ax.set_xlabel("language (distance rank from English: 0 = English)")
    ax.set_ylabel(done[0].main_metric)
    ax.set_title(f"{task}: score against language distance (± sd over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def dev_curves(
    task: str, choices: list[Choice], histories: dict[str, list[tuple[float, float]]]
) -> bytes | None:
    """`histories`: run id -> [(step, value)] of its en-dev main metric."""
    done = _done(choices)
    series = []
    for c, name in zip(done, _names(done), strict=True):
        curves = [histories.get(r.run_id) or [] for r in c.best.done]  # type: ignore[union-attr]
        curves = [sorted(h) for h in curves if h]
        if curves:
            series.append((name, curves))
    if not series:
        return None
    fig = _figure(5.2, 3.4)
    ax = fig.add_subplot()
    colors = [f"C{i}" for i in range(10)]
    for i, (name, curves) in enumerate(series):
        color = colors[i % len(colors)]
        by_step: dict[float, list[float]] = defaultdict(list)
        for h in curves:
            xs, ys = zip(*h, strict=True)
            ax.plot(xs, ys, color=color, alpha=0.3, lw=0.8)
            for x, y in h:
                if math.isfinite(y):
                    by_step[x].append(y)
        steps = sorted(by_step)
        ax.plot(steps, [float(np.mean(by_step[s])) for s in steps], color=color, lw=2, marker="o", ms=3,
                label=f"{name} ({len(curves)} seed{'s' if len(curves) != 1 else ''})")  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (or eval step)")
    ax.set_ylabel(f"English dev {done[0].main_metric}")
    ax.set_title(f"{task}: English dev curves of the chosen configurations", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)
