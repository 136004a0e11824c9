"""Tables for people: the dry-run plan, `xtuner sweep status`, and the end-of-sweep results per task in the layout
of the paper's Table 1 (the best configuration per method, chosen on English dev; its English test score, the mean
of the other languages, and the transfer gap). Everything reads the plan or the sweep state; no Ray, no MLflow.

Seeds: trials that differ only in the seed form one configuration; its dev and test numbers are seed means.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from statistics import mean
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from xtuner.errors import XtunerError
from xtuner.sweep.space import SweepPlan
from xtuner.sweep.state import SweepState, TrialRecord

# resolved settings the dry-run table shows beside the searched ones; ALWAYS_SHOWN with their defaults when unset
SHOWN = ("protocol", "lr", "psl", "batch_size", "grad_accum_steps", "epochs", "lr_schedule", "lr_gamma", "selection",
         "dev_split")  # fmt: skip
ALWAYS_SHOWN = ("lr_schedule", "dev_split")


def shown_settings(flat: dict[str, Any]) -> dict[str, Any]:
    """The settings of a resolved trial config the dry run shows: `SHOWN` where set (the lr schedule and the dev
    split that selection reads always, their defaults included; gamma only for the exponential schedule)."""
    from xtuner.trial.config import TrialConfig

    full = {**{k: TrialConfig.model_fields[k].default for k in ALWAYS_SHOWN}, **flat}
    shown = {k: full[k] for k in SHOWN if full.get(k) is not None}
    if shown.get("grad_accum_steps") == 1:
        del shown["grad_accum_steps"]
    if shown.get("lr_schedule") == "exponential":
        shown.setdefault("lr_gamma", TrialConfig.model_fields["lr_gamma"].default)
    else:
        shown.pop("lr_gamma", None)
    return shown


def fmt_params(values: dict[str, Any]) -> str:
    return (
        " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items()))
        or "-"
    )


def end_detail(rec: TrialRecord) -> str:
    """The end of a trial's progress line: done: selected en-dev, English test and the others' mean (main metric);
    pruned: where it stopped; otherwise the first line of its error."""
    main = rec.main_metric
    if rec.state == "done":
        detail = f"dev {rec.best_dev:.1f}" if rec.best_dev is not None else ""
        if f"test/en/{main}" in rec.final:
            detail += f" en {rec.final[f'test/en/{main}']:.1f}"
        others = _others(rec)
        return detail + (f" others {others:.1f}" if others is not None else "")
    if rec.state == "pruned":
        last = rec.dev_curve[-1] if rec.dev_curve else [0, float("nan")]
        return f"at epoch {last[0]:g}, dev {last[1]:.1f}"
    return rec.error.splitlines()[0][:160] if rec.error else ""


# ------------------------------------------------------------------------------------------------ dry run
def print_plan(plan: SweepPlan, console: Console | None = None) -> None:
    console = console or Console()
    spec = plan.spec
    if spec.search == "grid":
        order = " (run order: shuffled for ASHA)" if spec.scheduler.type == "asha" else ""
        # one model: named in the title, so that the settings keep the width of an 80-column console
        one = spec.model_names[0] if len(spec.model_names) == 1 else None
        table = Table(title=escape(f"sweep {spec.name}: {plan.n_trials} trials (grid{', ' + one if one else ''}){order}"))
        for col in ("#", "task", "method", *(() if one else ("model",)), "seed"):
            table.add_column(col, overflow="fold")
        table.add_column("settings", overflow="fold")  # a narrow console folds a long value, never cuts it
        for i, (key, params) in enumerate(plan.run_order(), 1):
            g = plan.groups[key]
            shown = shown_settings(g.flat(params)) | params
            table.add_row(*map(escape, (str(i), g.task, g.method, *(() if one else (g.model,)), str(g.seed), fmt_params(shown))))
    else:
        table = Table(
            title=escape(f"sweep {spec.name}: {plan.n_trials} trials ({spec.search}, {spec.num_samples} per group)")
        )
        for col in ("group", "task", "method", "model", "seed", "search space"):
            table.add_column(col)
        for g in plan.groups.values():
            space = {**{k: "[" + ", ".join(map(str, v)) + "]" for k, v in g.axes.items()},
                     **{k: str(d) for k, d in g.dists.items()}}  # fmt: skip
            try:  # the settings every trial of the group shares, resolved (its protocol's included)
                first = {**{k: v[0] for k, v in g.axes.items()}, **{k: d.low for k, d in g.dists.items()}}
                fixed = {k: v for k, v in shown_settings(g.flat(first)).items() if k not in space}
            except XtunerError:
                fixed = {}
            text = " ".join(f"{k}={v}" for k, v in sorted(space.items()))
            settings = " ".join(filter(None, [text, fmt_params(fixed) if fixed else ""]))
            table.add_row(*map(escape, (g.key, g.task, g.method, g.model, str(g.seed), settings)))
    console.print(table)
    console.print(f"trials: {plan.n_trials}")
    splits = sorted({f"{g.task}: {g.fixed.get('eval_split', 'test')}" for g in plan.groups.values()})
    if any(not s.endswith(": test") for s in splits):
        console.print(f"eval_split (what test/... metrics are scored on): {', '.join(splits)}", markup=False)
    for line in resource_plan(plan):
        console.print(line, markup=False)
    for line in plan.warnings:
        console.print(line, style="yellow", soft_wrap=True, markup=False)


def resource_plan(plan: SweepPlan) -> list[str]:
    spec = plan.spec
    lines = []
    cpus = os.cpu_count() or 1
    for method in sorted(spec.methods):
        cpu, gpu = plan.resources(method)
        n = sum(1 for k, _ in plan.grid if plan.groups[k].method == method) if spec.search == "grid" else \
            sum(spec.num_samples for g in plan.groups.values() if g.method == method)  # fmt: skip
        lines.append(f"resources: {method}: {cpu:g} CPU, {gpu:g} GPU per trial ({n} trials)")
    per_trial = max(plan.resources(m)[0] for m in spec.methods)
    fit = int(cpus // per_trial)
    conc = min(fit, spec.max_concurrent) if spec.max_concurrent else fit
    if fit == 0:
        lines.append(f"concurrency: this machine has {cpus} CPUs, too few for one trial ({per_trial:g} CPU); "
                     "run it on a Ray cluster (RAY_ADDRESS) or lower resources.cpu")  # fmt: skip
    else:
        lines.append(f"concurrency: up to {conc} trials at once on this machine ({cpus} CPUs"
                     + (f", max_concurrent {spec.max_concurrent})" if spec.max_concurrent else ")"))  # fmt: skip
    sched = spec.scheduler
    if sched.type == "asha":
        lines.append(f"scheduler: ASHA per task/method/model on en-dev main metric, grace {sched.grace_period:g} epoch(s), "
                     f"reduction factor {sched.reduction_factor:g}")  # fmt: skip
    else:
        lines.append("scheduler: none (every trial runs to the end)")
    lines.append(
        f"tracking: {spec.tracking.uri if spec.tracking.enabled else 'off'} (experiment {spec.experiment})"
    )
    storage = spec.storage if "://" in spec.storage else os.path.abspath(os.path.expanduser(spec.storage))
    lines.append(f"storage: {storage.rstrip('/')}/{spec.name}")
    if any(plan.resources(m)[1] > 0 for m in spec.methods):  # GPU sweeps: rough GPU-hours and a node plan
        from xtuner.cluster.estimate import estimate_lines
        from xtuner.intermediate.estimate import stage1_trials

        trials = planned_trials(plan)
        lines += estimate_lines(trials + stage1_trials(trials))  # each distinct stage 1 once (stage1-<variant>)
    return lines


def planned_trials(plan: SweepPlan) -> list[dict[str, Any]]:
    """Flat trial configs plus their resources (random/optuna: each group's first point, num_samples times)."""
    out = []
    if plan.spec.search == "grid":
        points = [(plan.groups[k], p) for k, p in plan.grid]
    else:
        first = lambda g: {**{k: v[0] for k, v in g.axes.items()}, **{k: d.low for k, d in g.dists.items()}}  # noqa: E731
        points = [(g, first(g)) for g in plan.groups.values() for _ in range(plan.spec.num_samples)]
    for group, params in points:
        cpu, gpu = plan.resources(group.method)
        out.append({**group.flat(params), "cpu": cpu, "gpu": gpu, "arm": group.method})
    return out


# ------------------------------------------------------------------------------------------------ results
def best_configs(state: SweepState) -> list[dict[str, Any]]:
    """Per (task, model, method): the configuration with the best seed-mean en-dev main metric among done trials."""
    by_cfg: dict[tuple, list[TrialRecord]] = defaultdict(list)
    counts: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for rec in state.trials.values():
        counts[(rec.task, rec.model, rec.method)][rec.state] += 1
        if rec.state == "done" and rec.best_dev is not None:
            cfg = json.dumps(
                {k: v for k, v in rec.searched_values().items() if k != "seed"}, sort_keys=True, default=str
            )
            by_cfg[(rec.task, rec.model, rec.method, cfg)].append(rec)
    rows: dict[tuple, dict[str, Any]] = {}
    for (task, model, method, cfg), recs in sorted(by_cfg.items()):
        dev = mean(r.best_dev for r in recs)  # type: ignore[misc]
        key = (task, model, method)
        if key in rows and rows[key]["dev_en"] >= dev:
            continue
        main = recs[0].main_metric
        rows[key] = {
            "task": task, "model": model, "method": method, "metric": main, "config": json.loads(cfg),
            "seeds": len(recs), "dev_en": dev, "test_en": _mean(recs, f"test/en/{main}"),
            "test_others": mean(_others(r) for r in recs) if all(_others(r) is not None for r in recs) else None,
            "gap": _mean(recs, f"test/gap/{main}"), "trial_ids": [r.trial_id for r in recs],
        }  # fmt: skip
    out = []
    for key in sorted(counts):
        row = rows.get(key, {"task": key[0], "model": key[1], "method": key[2], "config": None})
        row["counts"] = dict(counts[key])
        out.append(row)
    return out


def _mean(recs: list[TrialRecord], key: str) -> float | None:
    values = [r.final[key] for r in recs if key in r.final]
    return mean(values) if len(values) == len(recs) else None


def _others(rec: TrialRecord) -> float | None:
    values = [v for k, v in rec.final.items() if k.startswith("test/") and k.endswith(f"/{rec.main_metric}")
              and k.split("/")[1] not in ("en", "avg", "gap", "others")]  # fmt: skip
    return mean(values) if values else None


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def results_tables(state: SweepState) -> list[Table]:
    rows = best_configs(state)
    tables = []
    several_models = len({r["model"] for r in rows}) > 1
    for task in sorted({r["task"] for r in rows}):
        task_rows = [r for r in rows if r["task"] == task]
        metric = next((r["metric"] for r in task_rows if "metric" in r), "main metric")
        title = f"{task} ({metric}; best config per method chosen on English dev)"
        if eval_split(state, task) != "test":  # scored on the dev sets: say so where the numbers are
            title += f"\n{EVAL_SPLIT_NOTE[eval_split(state, task)]}"
        table = Table(title=escape(title))
        cols = ["method"] + (["model"] if several_models else []) + ["best config", "en dev", "en test",
                                                                      "others avg", "gap", "trials"]  # fmt: skip
        for c in cols:
            table.add_column(
                c,
                justify="right" if c in ("en dev", "en test", "others avg", "gap") else "left",
                no_wrap=c == "method",
            )
        for r in task_rows:
            counts = ", ".join(f"{n} {s}" for s, n in sorted(r["counts"].items()))
            cfg = fmt_params(r["config"]) if r["config"] is not None else "(no finished trial)"
            if r.get("seeds", 1) > 1:
                cfg += f" ({r['seeds']} seeds)"
            cells = (
                [r["method"]]
                + ([r["model"]] if several_models else [])
                + [
                    cfg,
                    _num(r.get("dev_en")),
                    _num(r.get("test_en")),
                    _num(r.get("test_others")),
                    _num(r.get("gap")),
                    counts,
                ]
            )
            table.add_row(*map(escape, cells))  # a "[...]" in a cell is text, not rich markup
        tables.append(table)
    return tables


EVAL_SPLIT_NOTE = {
    "validation": "eval_split validation: 'test' columns are scored on the dev sets; en test is the selection set "
    "itself (optimistic)",
    "mixed": "eval_split differs between trials of this task (test and validation): compare with care",
}


def eval_split(state: SweepState, task: str) -> str:
    """test, validation or mixed: what the trials of `task` scored their test/... metrics on."""
    splits = {str(r.params.get("eval_split", "test")) for r in state.trials.values() if r.task == task}
    return splits.pop() if len(splits) == 1 else "mixed"


def summary_markdown(state: SweepState) -> str:
    lines = [f"# sweep {state.name}", ""]
    for task in sorted({r.task for r in state.trials.values()}):
        if eval_split(state, task) != "test":
            lines += [f"{task}: {EVAL_SPLIT_NOTE[eval_split(state, task)]}", ""]
    lines += ["| task | method | model | best config | en dev | en test | others avg | gap |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in best_configs(state):
        cfg = fmt_params(r["config"]) if r["config"] is not None else "-"
        lines.append(f"| {r['task']} | {r['method']} | {r['model']} | {cfg} | {_num(r.get('dev_en'))} | "
                     f"{_num(r.get('test_en'))} | {_num(r.get('test_others'))} | {_num(r.get('gap'))} |")  # fmt: skip
    return "\n".join(lines) + "\n"


FAILED_STATES = ("error", "nonfinite")


def error_lines(state: SweepState) -> list[str]:
    """Why trials failed: each distinct message of the trials that ended in error or nonfinite, in full (never
    cut to a line's width as the progress lines are), once, with the ids of the trials that hit it; [] when none
    failed. Plain text: print it with markup off."""
    by_message: dict[tuple[str, str], list[str]] = defaultdict(list)
    for rec in sorted(state.trials.values(), key=lambda r: r.trial_id):
        if rec.state in FAILED_STATES:
            by_message[(rec.state, (rec.error or "").strip() or "(no message)")].append(rec.trial_id)
    if not by_message:
        return []
    n = sum(len(ids) for ids in by_message.values())
    lines = [f"{n} trial{'s' if n > 1 else ''} failed, {len(by_message)} distinct "
             f"error{'s' if len(by_message) > 1 else ''} (each trial's traceback: trial_<id>/error.txt in the sweep "
             "folder):"]  # fmt: skip
    for (kind, message), ids in sorted(by_message.items(), key=lambda kv: (-len(kv[1]), kv[1][0])):
        body = message.replace("\n", "\n    ")
        lines.append(f"- {kind} in {len(ids)} trial{'s' if len(ids) > 1 else ''} ({', '.join(ids)}):\n    {body}")
    return lines


def status_table(state: SweepState) -> Table:
    counts = state.counts()
    title = f"sweep {state.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    table = Table(title=escape(title))
    for col in ("trial", "task", "method", "params", "state", "en dev", "best"):
        table.add_column(col)
    best = {tuple(r["trial_ids"]): r for r in best_configs(state) if r.get("trial_ids")}
    best_ids = {tid for ids in best for tid in ids}
    for rec in sorted(state.trials.values(), key=lambda r: (r.task, r.method, r.trial_id)):
        dev = rec.best_dev
        state_text = rec.state
        if rec.failures:  # restarted from its checkpoint after a lost worker or node
            state_text += f" ({rec.failures} {'retry' if rec.failures == 1 else 'retries'})"
        table.add_row(*map(escape, (rec.trial_id, rec.task, rec.method, fmt_params(rec.searched_values()), state_text,
                                    _num(dev), "*" if rec.trial_id in best_ids else "")))  # fmt: skip
    return table
