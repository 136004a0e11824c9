"""The intermediate section of `xtuner report`: variant x method per target task, against ``none``.

For the runs that carry the param ``intermediate_variant`` (a sweep with an ``intermediate`` block), per target
task, method and model:

- **Variants**: none, en, multi; a multi variant with translation noise is its own row, ``multi+noise<p>``, so
  that a report over a clean and a noisy sweep compares both with none.
- **Choice**: per variant, the best configuration on English dev only (as Table 1 chooses, `select.choose`, within
  the runs of that variant), so every variant gets its own tuned learning rate.
- **Seen and unseen languages**: the non-English test languages the ``multi`` variant's stage 1 trained on (its
  ``intermediate.languages``, else every language with train data) are *seen*; the other non-English test
  languages are *unseen*. The split is the task's, the same for every variant, so rows compare like with like.
- **Table** ``intermediate_<task>``: per method and variant, the average over the test languages, the transfer gap
  (English minus the others), the mean over seen and over unseen languages, each mean ± sample sd (n seeds); and
  the difference to ``none`` of the same method, taken per seed (variant minus none for the same seed number) and
  given as mean ± sd (n seed pairs). The stage-1 cost is counted once per stage-1 key (`stage1_cost`).
- **Per language** ``intermediate_languages_<task>``: each language (tagged seen / unseen), each method's variants,
  and each variant's difference to ``none`` with the paired bootstrap's p (the report's procedure,
  `xtuner.analysis.report.bootstrap`: examples matched by id, pooled across seeds; ``*`` p < 0.05).
- **Summary** lines: "multi > none (finetune) on k of n languages (seen: a of b, unseen: c of d)".
- **Plot** ``intermediate_<task>.png``: the per-seed differences to ``none`` over seen and unseen languages, bars
  with ± sd, one group per method.
"""

from __future__ import annotations

import io
import json
import statistics
from collections import defaultdict

from xtuner.analysis.report import bootstrap as bs
from xtuner.analysis.report.runs import Run
from xtuner.analysis.report.select import Config, choose, mean_sd, method_order
from xtuner.analysis.report.tables import Table, cell
from xtuner.intermediate.settings import VARIANTS, seen_languages

VARIANT = "intermediate_variant"


def intermediate_runs(runs: list[Run]) -> list[Run]:
    return [r for r in runs if VARIANT in r.settings]


def variant_of(run: Run) -> str:
    """The run's variant as the section shows it: none, en, multi, or multi+noise<p> (noise > 0)."""
    variant = run.settings.get(VARIANT, "none")
    if variant == "multi":
        try:
            noise = float(json.loads(run.settings.get("intermediate") or "{}").get("noise") or 0.0)
        except (ValueError, AttributeError):
            noise = 0.0
        if noise > 0:
            return f"multi+noise{noise:g}"
    return variant


def _order(variant: str) -> tuple[int, str]:
    base = variant.split("+")[0]
    return (VARIANTS.index(base) if base in VARIANTS else len(VARIANTS), variant)


def best_by_variant(runs: list[Run]) -> dict[tuple[str, str, str, str], Config]:
    """(task, method, model, variant) -> the configuration chosen on English dev among that variant's runs."""
    out = {}
    for variant in sorted({variant_of(r) for r in runs}, key=_order):
        for ch in choose([r for r in runs if variant_of(r) == variant]):
            if ch.best is not None and ch.best.done:
                out[(ch.task, ch.method, ch.model, variant)] = ch.best
    return out


def seen_split(runs: list[Run], test_langs: list[str]) -> tuple[list[str], list[str]]:
    """(seen, unseen) non-English test languages of a task: seen = those the multi variant's stage 1 saw."""
    seen: set[str] = set()
    for r in runs:
        if r.settings.get(VARIANT) == "multi":
            seen |= set(seen_languages({VARIANT: "multi", "intermediate": r.settings.get("intermediate")}))
    others = [x for x in test_langs if x != "en"]
    return [x for x in others if x in seen], [x for x in others if x not in seen]


def seed_scores(cfg: Config, langs: list[str]) -> dict[int | None, float]:
    """Per done run (by seed), the mean main metric over `langs` (runs missing one are left out)."""
    out = {}
    for r in cfg.done:
        values = [r.score(x) for x in langs]
        if langs and all(v is not None for v in values):
            out[r.seed] = statistics.fmean(values)  # type: ignore[arg-type]
    return out


def paired_deltas(cfg: Config, base: Config, langs: list[str]) -> list[float]:
    """Per seed present on both sides: `cfg`'s mean over `langs` minus `base`'s."""
    a, b = seed_scores(cfg, langs), seed_scores(base, langs)
    return [a[s] - b[s] for s in sorted(set(a) & set(b), key=lambda s: -1 if s is None else s)]


def stage1_cost(runs: list[Run]) -> tuple[float, int]:
    """(seconds, distinct stage 1s): each stage-1 training counted once (the run that trained it, reused = 0)."""
    trained = [r for r in runs if r.metrics.get("stage1/reused") == 0.0 and "stage1/seconds" in r.metrics]
    return sum(r.metrics["stage1/seconds"] for r in trained), len(trained)


def _delta_cell(values: list[float]) -> str:
    mean, sd, n = mean_sd(values)
    if mean is None:
        return "-"
    return f"{mean:+.1f} ± {sd:.1f} ({n})" if sd is not None else f"{mean:+.1f} ({n})"


def intermediate_section(runs: list[Run], store: bs.PredictionStore | None, resamples: int = bs.RESAMPLES,
                         seed: int = bs.SEED) -> tuple[list[Table], list[str], dict[str, bytes]]:  # fmt: skip
    """(tables, summary lines, plots) of the section, for the tasks that have a run with an intermediate stage (a
    variant other than none); empty when none has (every trial logs ``intermediate_variant: none`` by default, and a
    section comparing none with itself would only repeat Table 1)."""
    runs = intermediate_runs(runs)
    staged = {r.task for r in runs if variant_of(r) != "none"}
    runs = [r for r in runs if r.task in staged]
    if not runs:
        return [], [], {}
    best = best_by_variant(runs)
    tables, lines, plots = [], [], {}
    for task in sorted({r.task for r in runs}):
        mine = {k: v for k, v in best.items() if k[0] == task}
        if not mine:
            continue
        langs: list[str] = []
        for cfg in mine.values():
            langs += [x for x in cfg.languages() if x not in langs]
        langs.sort(key=lambda x: (x != "en", x))
        seen, unseen = seen_split([r for r in runs if r.task == task], langs)
        tables.append(_summary_table(task, mine, seen, unseen, runs))  # stage 1s are shared by every target
        table, summary = _language_table(task, mine, langs, seen, unseen, store, resamples, seed)
        tables.append(table)
        lines += summary
        png = _plot(task, mine, seen, unseen)
        if png:
            plots[f"intermediate_{task}.png"] = png
    return tables, lines, plots


def _rows(mine: dict) -> list[tuple[str, str, str, Config]]:
    keys = sorted(mine, key=lambda k: (method_order(k[1]), k[2], _order(k[3])))
    return [(k[1], k[2], k[3], mine[k]) for k in keys]


def _summary_table(task: str, mine: dict, seen: list[str], unseen: list[str], runs: list[Run]) -> Table:
    rows, records = [], []
    for method, model, variant, cfg in _rows(mine):
        base = mine.get((task, method, model, "none"))
        groups = {"avg": None, "seen": seen, "unseen": unseen}
        vals = {g: (cfg.values("avg") if g == "avg" else list(seed_scores(cfg, ls).values()))
                for g, ls in groups.items()}  # fmt: skip
        deltas = {}
        for g, ls in groups.items():
            if base is None or variant == "none":
                deltas[g] = []
            elif g == "avg":
                a = {r.seed: r.score("avg") for r in cfg.done}
                b = {r.seed: r.score("avg") for r in base.done}
                deltas[g] = [a[s] - b[s] for s in a if s in b and a[s] is not None and b[s] is not None]
            else:
                deltas[g] = paired_deltas(cfg, base, ls)  # type: ignore[arg-type]
        s1 = [r.metrics["stage1/dev/en/main"] for r in cfg.done if "stage1/dev/en/main" in r.metrics]
        rows.append([method, variant, cfg.label, cell([r.dev for r in cfg.done if r.dev is not None]),
                     cell(vals["avg"]), cell(cfg.values("gap")), cell(vals["seen"]), cell(vals["unseen"]),
                     *(("" if variant == "none" else _delta_cell(deltas[g])) for g in groups),
                     cell(s1) if s1 else ""])  # fmt: skip
        records.append({"task": task, "method": method, "model": model, "variant": variant, "config": cfg.label,
                        **{g: mean_sd(v)[0] for g, v in vals.items()}, "gap": mean_sd(cfg.values("gap"))[0],
                        **{f"delta_{g}": mean_sd(d)[0] for g, d in deltas.items()},
                        **{f"delta_{g}_sd": mean_sd(d)[1] for g, d in deltas.items()},
                        "n": len(cfg.done), "stage1_dev": mean_sd(s1)[0], "seen_languages": seen,
                        "unseen_languages": unseen})  # fmt: skip
    seconds, n = stage1_cost(runs)
    notes = [f"seen: {', '.join(seen) or 'none'} (the multi variant's stage-1 languages); unseen: "
             f"{', '.join(unseen) or 'none'}; cells mean ± sd (n seeds); Δ: per-seed difference to none of the "
             "same method, mean ± sd (n seed pairs)",
             f"stage-1 cost of these sweeps (every target task): {n} stage 1s trained, {seconds / 60:.1f} min in all "
             "(each counted once, by the trial that trained it; the others reused it)"]  # fmt: skip
    columns = ["method", "variant", "config", "en dev", "avg", "gap", f"seen ({len(seen)})",
               f"unseen ({len(unseen)})", "Δ avg", "Δ seen", "Δ unseen", "stage-1 en dev"]  # fmt: skip
    return Table(
        f"intermediate_{task}", f"{task}: intermediate-task variants vs none", columns, rows, notes, records
    )


def _language_table(task: str, mine: dict, langs: list[str], seen: list[str], unseen: list[str],
                    store: bs.PredictionStore | None, resamples: int, seed: int) -> tuple[Table, list[str]]:  # fmt: skip
    rows_spec = _rows(mine)
    comps: dict[tuple[str, str, str], dict[str, bs.Comparison]] = defaultdict(dict)
    for method, model, variant, cfg in rows_spec:
        base = mine.get((task, method, model, "none"))
        if variant == "none" or base is None:
            continue
        for lang in langs:
            comps[(method, model, variant)][lang] = (
                bs.compare(store, cfg.done, base.done, lang, resamples, seed) if store is not None
                else bs.Comparison(lang, None, None, 0, "not run"))  # fmt: skip
    columns = ["lang", "group"] + [f"{m} {v}" for m, _, v, _ in rows_spec]
    columns += [f"{m} {v} - none" for (m, _, v) in comps]
    rows, records = [], []
    group_of = {x: "seen" for x in seen} | {x: "unseen" for x in unseen} | {"en": "source"}
    for lang in [*langs, "avg"]:
        row, rec = (
            [lang, group_of.get(lang, "")],
            {"task": task, "lang": lang, "group": group_of.get(lang, "")},
        )
        for m, _, v, cfg in rows_spec:
            row.append(cell(cfg.values(lang)))
            rec[f"{m} {v}"] = mean_sd(cfg.values(lang))[0]
        for (m, model, v), by_lang in comps.items():
            cfg, base = mine[(task, m, model, v)], mine[(task, m, model, "none")]
            va, vb = cfg.values(lang), base.values(lang)
            delta = statistics.fmean(va) - statistics.fmean(vb) if va and vb else None
            comp = by_lang.get(lang)
            mark = "*" if comp is not None and comp.significant else ""
            p = (
                ""
                if comp is None or comp.p is None
                else (f" p={comp.p:.3f}" if comp.p >= 0.001 else " p<0.001")
            )
            row.append("-" if delta is None else f"{delta:+.1f}{mark}{p}")
            rec[f"{m} {v} - none"] = delta
            rec[f"p {m} {v} - none"] = comp.p if comp else None
        rows.append(row)
        records.append(rec)
    summary = []
    for (m, _, v), by_lang in comps.items():
        tested = [c for c in by_lang.values() if c.p is not None]
        if not tested:
            summary.append(f"{task}: {v} vs none ({m}): not tested (no per-example predictions)")
            continue

        summary.append(f"{task}: {v} > none ({m}) on {_count(tested, langs, 1)} languages (seen: "
                       f"{_count(tested, seen, 1)}, unseen: {_count(tested, unseen, 1)}); none > {v} on "
                       f"{_count(tested, langs, -1)} (paired bootstrap, p < {bs.ALPHA:g})")  # fmt: skip
    notes = [*summary, "difference: seed means; p: paired bootstrap over test examples pooled across seeds (* p < "
             f"{bs.ALPHA:g}; docs/report.md)"]  # fmt: skip
    return Table(f"intermediate_languages_{task}", f"{task}: per language, variants vs none", columns, rows, notes,
                 records), summary  # fmt: skip


def _count(tested: list[bs.Comparison], which: list[str], sign: int) -> str:
    got = [c for c in tested if c.lang in which]
    k = sum(1 for c in got if c.significant and c.delta is not None and c.delta * sign > 0)
    return f"{k} of {len(got)}"


def _plot(task: str, mine: dict, seen: list[str], unseen: list[str]) -> bytes | None:
    from matplotlib.figure import Figure

    bars: list[tuple[str, str, float, float]] = []  # (label, group, mean, sd)
    for method, model, variant, cfg in _rows(mine):
        base = mine.get((task, method, model, "none"))
        if variant == "none" or base is None:
            continue
        for group, ls in (("seen", seen), ("unseen", unseen)):
            d = paired_deltas(cfg, base, ls)
            mean, sd, _ = mean_sd(d)
            if mean is not None:
                bars.append((f"{method}\n{variant}", group, mean, sd or 0.0))
    if not bars:
        return None
    labels = list(dict.fromkeys(b[0] for b in bars))
    fig = Figure(figsize=(max(4.0, 1.3 * len(labels) + 1.5), 3.4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.38
    for k, group in enumerate(("seen", "unseen")):
        xs, ys, es = [], [], []
        for i, label in enumerate(labels):
            hit = [b for b in bars if b[0] == label and b[1] == group]
            if hit:
                xs.append(i + (k - 0.5) * width)
                ys.append(hit[0][2])
                es.append(hit[0][3])
        ax.bar(xs, ys, width, yerr=es, capsize=3, label=f"{group} languages")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("Δ vs none (main metric, per-seed mean ± sd)")
    ax.set_title(f"{task}: intermediate variant minus none", fontsize=10)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
