"""`xtuner report`: answers from MLflow runs (the system of record), across one or more sweeps.

    runs.load (MLflow: child runs by sweep tag or experiment, their status)
      -> select.choose (best configuration per task, method and model on English dev only)
      -> tables (Table 1 and its sub-tables, configurations, per language) + bootstrap (paired, per language)
      -> plots (PNG) -> render (md, csv, json, terminal) and html (one self-contained page)
      -> log_to_parents (the files under ``report/`` of each sweep's parent run)

See docs/report.md for the layout and the significance procedure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xtuner.analysis.report import bootstrap as bs
from xtuner.analysis.report import plots as pl
from xtuner.analysis.report import reference as refmod
from xtuner.analysis.report import tables as tb
from xtuner.analysis.report.runs import Selection, base_task, default_tracking_uri, load
from xtuner.analysis.report.select import Choice, choose

ARTIFACT_DIR = "report"


@dataclass
class Report:
    selection: Selection
    choices: list[Choice]
    tables: list[tb.Table]
    significance: list[tb.Significance]
    plots: dict[str, bytes]
    resamples: int
    seed: int
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " + ".join(self.selection.sweeps) or (self.selection.experiment or "report")

    @property
    def tasks(self) -> list[str]:
        return sorted({c.task for c in self.choices})

    def header(self) -> list[str]:
        from xtuner.cluster.redact import redact_text

        sel = self.selection
        return [f"sweeps: {', '.join(sel.sweeps)}" + (f" (experiment {sel.experiment})" if sel.experiment else ""),
                f"tracking: {redact_text(sel.tracking_uri)}", f"runs: {len(sel.runs)}"]  # fmt: skip

    def status_lines(self) -> list[str]:
        """Per task and method, the runs that are not done (they are in no number)."""
        out = []
        for c in self.choices:
            counts = c.counts
            if any(counts[s] for s in ("pruned", "failed", "running")) or c.best is None:
                text = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                extra = "; no finished run" if c.best is None else ""
                out.append(f"{c.task} {c.method}: {text} (only done runs are in the tables{extra})")
        return out

    def summary_lines(self) -> list[str]:
        """Runs not in any number, the significance per task (only the tested ones when a note says why none
        was), and the notes."""
        tested = [x.summary for x in self.significance if any(c.p is not None for c in x.comparisons)]
        sig = tested if self.notes else [x.summary for x in self.significance]
        return [*self.status_lines(), *sig, *self.notes]

    def procedure(self) -> list[str]:
        return ["Best configuration per task, method and model: the highest mean English dev score (the best en-dev "
                "main metric of each done run); test scores never enter the choice.",
                "Cells: mean ± sample standard deviation (n seeds) over the done runs of the chosen configuration; "
                "pruned, failed and running runs are counted, never averaged in.",
                f"Significance: paired bootstrap over test examples per language, {self.resamples} resamples, "
                f"numpy default_rng({self.seed}) per comparison, the same example indices for every seed of both "
                "configurations (pooled across seeds); two-sided p from the bootstrap distribution of the "
                "difference; * marks p < 0.05.",
                "Published numbers, where shown, are labelled rows from xtuner/analysis/report/reference.yaml, "
                "never mixed into measured rows."]  # fmt: skip


def build(selection: Selection, client: Any, *, resamples: int = bs.RESAMPLES, seed: int = bs.SEED,
          reference: str | Path | None = None, with_plots: bool = True) -> Report:  # fmt: skip
    choices = choose(selection.runs)
    refs = refmod.matching(refmod.load(reference), {(c.task, c.model) for c in choices if c.best})
    tables = tb.table1(choices, refs)
    store = bs.PredictionStore(client)
    sig_all: list[tb.Significance] = []
    try:
        for task in sorted({c.task for c in choices}):
            mine = [c for c in choices if c.task == task]
            sig = tb.significance(store, task, mine, resamples, seed)
            sig_all += sig
            tables += [tb.languages_table(task, mine, sig), tb.configs_table(task, mine)]
        from xtuner.intermediate.report import intermediate_section  # runs with an intermediate_variant param

        inter_tables, inter_lines, inter_plots = intermediate_section(selection.runs, store, resamples, seed)
        tables += inter_tables
    finally:
        store.close()
    notes = list(inter_lines)
    if sig_all and all(c.p is None for s in sig_all for c in s.comparisons):
        notes.append("significance: no per-example predictions in these runs (artifacts predictions/<lang>.parquet); "
                     "differences are shown without a test")  # fmt: skip
    report = Report(selection, choices, tables, sig_all, {}, resamples, seed, notes)
    if with_plots:
        report.plots = {**make_plots(choices, client), **inter_plots}
    return report


def make_plots(choices: list[Choice], client: Any) -> dict[str, bytes]:
    from xtuner.errors import XtunerError
    from xtuner.tasks import get_task

    plots: dict[str, bytes | None] = {"gap.png": pl.gap_bars(choices)}
    for task in sorted({c.task for c in choices}):
        mine = [c for c in choices if c.task == task]
        try:
            info = dict(get_task(base_task(task)).language_info)
        except XtunerError:
            info = {}
        histories = {}
        for c in mine:
            for r in c.best.done if c.best else []:
                hist = client.get_metric_history(r.run_id, r.dev_key)
                histories[r.run_id] = [(float(h.step), float(h.value)) for h in hist]
        plots[f"heatmap_{task}.png"] = pl.heatmap(task, mine)
        plots[f"distance_{task}.png"] = pl.distance(task, mine, info)
        plots[f"dev_{task}.png"] = pl.dev_curves(task, mine, histories)
    return {k: v for k, v in plots.items() if v}


def report(sweeps: list[str], *, experiment: str | None = None, tracking_uri: str | None = None,
           **kw: Any) -> Report:  # fmt: skip
    import os

    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from xtuner.sweep.checks import check_server, tracker_errors

    uri = default_tracking_uri(tracking_uri)
    check_server(uri)  # a dead server is one error line now, not minutes of MLflow's retries
    with tracker_errors(uri):
        client = MlflowClient(tracking_uri=uri)
        selection = load(client, list(sweeps), experiment, uri)
    return build(selection, client, **kw)


def log_to_parents(report: Report, out: Path) -> list[str]:
    """Upload the files in `out` under ``report/`` of each sweep's parent run; returns the run ids."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=report.selection.tracking_uri)
    done = []
    for sweep in report.selection.sweeps:
        run_id = report.selection.parents.get(sweep)
        if run_id:
            client.log_artifacts(run_id, str(out), ARTIFACT_DIR)
            done.append(run_id)
    return done


def log_sweep_report(sweep: str, tracking_uri: str, experiment: str | None = None) -> list[str]:
    """At the end of a sweep: its report (plots, HTML, md, csv, json) logged under ``report/`` of its parent run."""
    import shutil
    import tempfile

    from xtuner.analysis.report.render import FORMATS, write

    rep = report([sweep], experiment=experiment, tracking_uri=tracking_uri)
    tmp = Path(tempfile.mkdtemp(prefix="xtuner-report-"))
    try:
        write(rep, tmp, list(FORMATS))
        return log_to_parents(rep, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
