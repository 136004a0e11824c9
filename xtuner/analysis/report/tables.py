"""The report's tables, as plain data (`Table`: string cells for people, `records` for csv/json).

- **Table 1** (`table1`): rows are methods (the best configuration per method and task, chosen on English dev),
  columns are tasks; a cell is the average over the test languages, mean ± sample sd (n seeds). Sub-tables: English
  (`table1_en`), the mean of the other languages (`table1_others`) and the transfer gap, English minus others
  (`table1_gap`). Published numbers (`reference`) follow as labelled rows where task and model match.
- **Configurations** per task (`configs_<task>`): every configuration, its English dev score, whether it was chosen,
  and its runs by status (done, pruned, failed, running); runs that are not done are never in a number.
- **Per language** per task (`languages_<task>`): one row per language, methods side by side, the difference of each
  method to the baseline (fine-tuning when present) and the paired bootstrap's p (`bootstrap`); ``*`` marks p < 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xtuner.analysis.report import bootstrap as bs
from xtuner.analysis.report.reference import Reference
from xtuner.analysis.report.select import Choice, Config, mean_sd, method_order

SUBTABLES = (("avg", "table1", "Table 1: average over languages"), ("en", "table1_en", "English"),
             ("others", "table1_others", "Mean of the other languages"),
             ("gap", "table1_gap", "Transfer gap (English minus the others; lower is better)"))  # fmt: skip


@dataclass
class Table:
    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    reference_rows: int = 0  # the last rows are published numbers


def cell(values: list[float]) -> str:
    mean, sd, n = mean_sd(values)
    if mean is None:
        return "-"
    return f"{mean:.1f} ± {sd:.1f} ({n})" if sd is not None else f"{mean:.1f} ({n})"


def row_label(choice: Choice, several_models: bool) -> str:
    return f"{choice.method} [{short_model(choice.model)}]" if several_models else choice.method


def short_model(model: str) -> str:
    return model.rstrip("/").split("/")[-1]


def table1(choices: list[Choice], refs: list[Reference]) -> list[Table]:
    tasks = sorted({c.task for c in choices})
    several = len({c.model for c in choices}) > 1
    labels = sorted({(method_order(c.method), c.model, row_label(c, several)) for c in choices})
    by = {(c.task, row_label(c, several)): c for c in choices}
    metric = {t: next(c.main_metric for c in choices if c.task == t) for t in tasks}
    out = []
    for which, key, title in SUBTABLES:
        rows, records = [], []
        for _, model, label in labels:
            cells = []
            for t in tasks:
                ch = by.get((t, label))
                values = ch.best.values(which) if ch and ch.best else []
                cells.append(cell(values) if ch else "")
                mean, sd, n = mean_sd(values)
                if ch:
                    records.append({"method": label, "model": model, "task": t, "metric": metric[t], "which": which,
                                    "mean": mean, "sd": sd, "n": n, "values": values,
                                    "config": ch.best.label if ch.best else None})  # fmt: skip
            rows.append([label, *cells])
        n_ref = 0
        for ref in refs:
            cells = [ref.cell(t, which) for t in tasks]
            if any(cells):
                rows.append([f"{ref.label} (published)", *[c or "" for c in cells]])
                n_ref += 1
        columns = ["method", *[f"{t} ({metric[t]})" for t in tasks]]
        notes = [
            "cells: mean ± sample sd (n seeds) of the best configuration per method, chosen on English dev"
            if key == "table1"
            else ""
        ]
        if n_ref:
            notes.append(
                "published rows (not measured here): " + "; ".join(sorted({r.citation for r in refs}))
            )
        out.append(Table(key, title, columns, rows, [n for n in notes if n], records, n_ref))
    return out


def configs_table(task: str, choices: list[Choice]) -> Table:
    rows, records = [], []
    for ch in choices:
        for cfg in sorted(ch.configs, key=lambda c: -(c.dev if c.dev is not None else float("-inf"))):
            counts = {
                s: sum(1 for r in cfg.runs if r.status == s) for s in ("done", "pruned", "failed", "running")
            }
            status = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            chosen = cfg is ch.best
            dev = mean_sd([r.dev for r in cfg.done if r.dev is not None])
            rows.append([ch.method, cfg.label, cell([r.dev for r in cfg.done if r.dev is not None]),
                         cell(cfg.values("avg")), status, "*" if chosen else ""])  # fmt: skip
            notes = "; ".join(f"seed {r.seed}: {r.status}{' (' + r.note + ')' if r.note else ''}" for r in cfg.runs
                              if r.status != "done")  # fmt: skip
            records.append({"task": task, "method": ch.method, "model": ch.model, "config": cfg.label,
                            "settings": cfg.settings, "dev_mean": dev[0], "dev_sd": dev[1], "chosen": chosen,
                            **counts, "not_done": notes,
                            "runs": [{"run_id": r.run_id, "sweep": r.sweep, "seed": r.seed, "status": r.status,
                                      "note": r.note} for r in cfg.runs]})  # fmt: skip
    table = Table(f"configs_{task}", f"{task}: configurations (chosen on English dev: *)",
                  ["method", "config", "en dev", "test avg", "runs", "chosen"], rows, records=records)  # fmt: skip
    for rec in records:
        if rec["not_done"]:
            table.notes.append(f"{rec['method']} {rec['config']}: {rec['not_done']}")
    return table


@dataclass
class Significance:
    task: str
    method: str  # A
    baseline: str  # B
    comparisons: list[bs.Comparison]

    @property
    def summary(self) -> str:
        tested = [c for c in self.comparisons if c.p is not None]
        if not tested:
            notes = {c.note for c in self.comparisons if c.note}
            return f"{self.task}: {self.method} vs {self.baseline}: not tested ({'; '.join(sorted(notes)) or 'no data'})"
        better = sum(1 for c in tested if c.significant and c.delta is not None and c.delta > 0)
        worse = sum(1 for c in tested if c.significant and c.delta is not None and c.delta < 0)
        n = len(tested)
        return (f"{self.task}: {self.method} > {self.baseline} on {better} of {n} languages, "
                f"{self.baseline} > {self.method} on {worse} of {n} (paired bootstrap, p < {bs.ALPHA:g})")  # fmt: skip


def significance(store: bs.PredictionStore | None, task: str, choices: list[Choice], resamples: int,
                 seed: int) -> list[Significance]:  # fmt: skip
    """Each method's best configuration against the baseline's (fine-tuning when present), per language."""
    done = [c for c in choices if c.best is not None]
    if len(done) < 2:
        return []
    base = done[0]  # choices are sorted with fine-tuning first
    out = []
    for ch in done[1:]:
        assert ch.best is not None and base.best is not None
        langs = [x for x in ch.best.languages() if x in base.best.languages()]
        comps = []
        for lang in langs:
            if store is None:
                comps.append(bs.Comparison(lang, _mean_delta(ch.best, base.best, lang), None, 0, "not run"))
                continue
            comps.append(bs.compare(store, ch.best.done, base.best.done, lang, resamples, seed))
        out.append(Significance(task, _name(ch, choices), _name(base, choices), comps))
    return out


def _name(ch: Choice, choices: list[Choice]) -> str:
    return row_label(ch, len({c.model for c in choices}) > 1)


def _mean_delta(a: Config, b: Config, lang: str) -> float | None:
    va, vb = a.values(lang), b.values(lang)
    return (sum(va) / len(va) - sum(vb) / len(vb)) if va and vb else None


def languages_table(task: str, choices: list[Choice], sig: list[Significance]) -> Table:
    done = [c for c in choices if c.best is not None]
    names = [_name(c, choices) for c in done]
    langs: list[str] = []
    for c in done:
        assert c.best is not None
        langs += [x for x in c.best.languages() if x not in langs]
    langs.sort(key=lambda x: (x != "en", x))
    columns = ["lang", *names]
    for s in sig:
        columns += [f"{s.method} - {s.baseline}", "p"]
    rows, records = [], []
    for lang in [*langs, "avg"]:
        row = [lang]
        rec: dict[str, Any] = {"task": task, "lang": lang}
        for name, c in zip(names, done, strict=True):
            assert c.best is not None
            values = c.best.values(lang)
            row.append(cell(values))
            rec[name] = mean_sd(values)[0]
        for s in sig:
            comp = next((x for x in s.comparisons if x.lang == lang), None)
            delta = _mean_delta(_best(done, s.method, choices), _best(done, s.baseline, choices), lang)
            mark = "*" if comp is not None and comp.significant else ""
            row += ["-" if delta is None else f"{delta:+.1f}{mark}", _p(comp)]
            rec[f"{s.method}-{s.baseline}"] = delta
            rec[f"p {s.method}-{s.baseline}"] = comp.p if comp else None
        rows.append(row)
        records.append(rec)
    notes = [s.summary for s in sig]
    if sig:
        notes.append(f"difference: seed means; p: paired bootstrap over test examples pooled across seeds "
                     f"(* p < {bs.ALPHA:g}; see docs/report.md)")  # fmt: skip
    return Table(f"languages_{task}", f"{task}: per language", columns, rows, notes, records)


def _best(done: list[Choice], name: str, choices: list[Choice]) -> Config:
    ch = next(c for c in done if _name(c, choices) == name)
    assert ch.best is not None
    return ch.best


def _p(comp: bs.Comparison | None) -> str:
    if comp is None:
        return ""
    if comp.p is None:
        return comp.note or "-"
    return f"{comp.p:.3f}" if comp.p >= 0.001 else "<0.001"
