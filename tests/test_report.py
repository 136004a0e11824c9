"""`xtuner report` on a real MLflow server fed with runs logged directly in the sweeps' layout (fast): Table 1,
significance, statuses, several sweeps, older runs without the uniform keys, reference rows, bad input."""

from __future__ import annotations

import json

import pytest
import yaml
from mlflow.tracking import MlflowClient
from report_runs import correct_vector, log_sweep

from xtuner.analysis.report import build, report
from xtuner.analysis.report.runs import load
from xtuner.cli import main as cli_main

LANGS = ["en", "s1", "s3", "s6"]
N = 200


def _trials(
    task: str, ft: float, pt: float, predictions: bool = True, seeds=(1, 2, 3), pt_step: float = 0.01
) -> list[dict]:
    """Fine-tuning (two lrs; 1e-3 wins on dev) and deep prompt (wins on dev at lr 1e-2) with known accuracies."""
    out = []
    for seed in seeds:
        for lr, acc, dev in ((1e-3, ft, 70.0), (3e-4, ft - 0.2, 60.0)):
            out.append(dict(task=task, method="finetune", seed=seed, lr=lr, status="done", dev=[50.0, dev + seed],
                            predictions=predictions,
                            correct={x: correct_vector(N, acc - 0.05 * i, seed * 10 + i) for i, x in enumerate(LANGS)}))  # fmt: skip
        out.append(dict(task=task, method="deep_prompt", seed=seed, lr=1e-2, psl=16, status="done",
                        dev=[40.0, 55.0, 66.0 + seed], predictions=predictions,
                        correct={x: correct_vector(N, pt - pt_step * i, seed * 100 + i) for i, x in enumerate(LANGS)}))  # fmt: skip
    return out


STATUS_TRIALS = [dict(task="synth-xnli", method="deep_prompt", seed=s, lr=3e-2, psl=16, status=st)
                 for s, st in ((1, "pruned"), (2, "failed"), (3, "running"))]  # fmt: skip


@pytest.fixture(scope="module")
def logged(mlflow_server: str) -> dict[str, str]:
    client = MlflowClient(mlflow_server)
    return {
        "main": log_sweep(client, "rep-main", _trials("synth-xnli", 0.6, 0.8) + STATUS_TRIALS),
        "second": log_sweep(
            client, "rep-second", _trials("synth-pawsx", 0.7, 0.7, pt_step=0.05), experiment="report-tests-2"
        ),
        "old": log_sweep(client, "rep-old", _trials("synth-xnli", 0.6, 0.8, seeds=(1,)), uniform_keys=False),
        "nopred": log_sweep(
            client, "rep-nopred", _trials("synth-xnli", 0.6, 0.8, predictions=False, seeds=(1,))
        ),
    }


def _table(rep, key):
    return next(t for t in rep.tables if t.key == key)


def test_report_cli_prints_table1_writes_files_and_logs_them(logged, mlflow_server, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert cli_main(["report", "rep-main", "--tracking-uri", mlflow_server, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    long = [line for line in text.splitlines() if len(line) > 100 and str(out) not in line]
    assert not long, long
    # finetune lr 1e-3 (dev 71-73) beats lr 3e-4: its languages are 60/55/50/45 -> 52.5, the same every seed
    assert "finetune" in text and "52.5 ± 0.0 (3)" in text
    assert "deep_prompt" in text and "78.5 ± 0.0 (3)" in text  # 80/79/78/77
    assert "synth-xnli deep_prompt: 3 done, 1 pruned, 1 failed, 1 running" in text
    assert "deep_prompt > finetune on 4 of 4 languages" in text
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.html", "report.json", "table1.csv", "languages_synth-xnli.csv", "gap.png",
            "heatmap_synth-xnli.png", "distance_synth-xnli.png", "dev_synth-xnli.png"} <= names  # fmt: skip
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html and 'src="http' not in html
    data = json.loads((out / "report.json").read_text())
    cells = {r["method"]: r for r in data["tables"]["table1"]["records"]}
    assert (
        cells["finetune"]["values"] == pytest.approx([52.5] * 3) and cells["finetune"]["config"] == "lr=0.001"
    )
    client = MlflowClient(mlflow_server)
    logged_files = {f.path for f in client.list_artifacts(logged["main"], "report")}
    assert {"report/report.html", "report/gap.png", "report/heatmap_synth-xnli.png"} <= logged_files


def test_statuses_are_shown_and_never_averaged(logged, mlflow_server) -> None:
    rep = report(["rep-main"], tracking_uri=mlflow_server, with_plots=False)
    configs = _table(rep, "configs_synth-xnli")
    rows = {(r[0], r[1]): r for r in configs.rows}
    assert rows["deep_prompt", "lr=0.03 psl=16"][4] == "1 pruned, 1 failed, 1 running"
    assert rows["deep_prompt", "lr=0.03 psl=16"][2] == "-"  # no dev score: never chosen, never averaged
    assert rows["deep_prompt", "lr=0.01 psl=16"][5] == "*"
    assert any("seed 2: failed (RuntimeError: boom)" in n for n in configs.notes)
    assert any("pruned at epoch 1" in n for n in configs.notes)
    per_lang = _table(rep, "languages_synth-xnli")
    en = per_lang.rows[0]
    assert en[:3] == ["en", "60.0 ± 0.0 (3)", "80.0 ± 0.0 (3)"] and en[3] == "+20.0*"


def test_report_over_two_sweeps(logged, mlflow_server, tmp_path) -> None:
    rep = report(["rep-main", "rep-second"], tracking_uri=mlflow_server, with_plots=False)
    t1 = _table(rep, "table1")
    assert t1.columns == ["method", "synth-pawsx (accuracy)", "synth-xnli (accuracy)"]
    assert {s.task for s in rep.significance} == {"synth-xnli", "synth-pawsx"}
    pawsx = next(s for s in rep.significance if s.task == "synth-pawsx")
    # the same accuracy on every language (other examples right): no difference is marked
    assert all(not c.significant for c in pawsx.comparisons) and "on 0 of 4 languages" in pawsx.summary
    assert set(rep.selection.parents) == {"rep-main", "rep-second"}


def test_runs_without_uniform_keys_read_the_same(logged, mlflow_server) -> None:
    client = MlflowClient(mlflow_server)
    old = load(client, ["rep-old"], None, mlflow_server)
    assert all("test/en/main" not in r.metrics for r in old.runs)
    rep = build(old, client, with_plots=False)
    cells = {r[0]: r[1] for r in _table(rep, "table1").rows}
    assert cells == {"finetune": "52.5 (1)", "deep_prompt": "78.5 (1)"}


def test_without_predictions_significance_says_so(logged, mlflow_server) -> None:
    rep = report(["rep-nopred"], tracking_uri=mlflow_server, with_plots=False)
    assert any("no per-example predictions" in n for n in rep.notes)
    row = _table(rep, "languages_synth-xnli").rows[0]
    assert row[3] == "+20.0" and row[4] == "no per-example predictions"


def test_reference_rows_only_when_task_and_model_match(logged, mlflow_server, tmp_path) -> None:
    ref = {"sources": {"t": {"paper": "Test source 2099"}}, "entries": [
        {"source": "t", "table": "Table 9", "page": 1, "label": "tiny ref", "model": "builtin:tiny-xlmr",
         "task": "synth-xnli", "metric": "accuracy", "avg": 12.3},
        {"source": "t", "table": "Table 9", "page": 1, "label": "large ref", "model": "xlm-roberta-large",
         "task": "synth-xnli", "metric": "accuracy", "avg": 45.6},
        {"source": "t", "table": "Table 9", "page": 1, "label": "other task", "model": "builtin:tiny-xlmr",
         "task": "xnli", "metric": "accuracy", "avg": 78.9}]}  # fmt: skip
    path = tmp_path / "ref.yaml"
    path.write_text(yaml.safe_dump(ref))
    rep = report(["rep-main"], tracking_uri=mlflow_server, with_plots=False, reference=path)
    t1 = _table(rep, "table1")
    assert t1.reference_rows == 1 and t1.rows[-1] == ["tiny ref (published)", "12.3"]
    assert all(r["method"] != "tiny ref" for r in t1.records)  # never mixed into the measured numbers
    assert any("Test source 2099, Table 9, p. 1" in n for n in t1.notes)
    shipped = report(["rep-main"], tracking_uri=mlflow_server, with_plots=False)
    assert _table(shipped, "table1").reference_rows == 0  # the shipped file has no confirmed number for these


def test_dev_split_runs_are_a_task_of_their_own(mlflow_server, tmp_path, capsys) -> None:
    """Runs trained with eval_split validation (tag xtuner.eval_split, or only the param as older runs) are
    reported as ``<task>[dev]``: their own column, configurations and averages, never mixed with test numbers."""
    client = MlflowClient(mlflow_server)
    test = _trials("synth-xnli", 0.6, 0.8, seeds=(1,))
    dev = [{**t, "eval_split": "validation"} for t in _trials("synth-xnli", 0.9, 0.9, seeds=(1,))]
    dev_param_only = [{**t, "eval_split": "validation", "eval_split_tag": False}
                      for t in _trials("synth-pawsx", 0.5, 0.5, seeds=(1,))]  # fmt: skip
    log_sweep(client, "rep-dev", test + dev + dev_param_only)
    rep = report(["rep-dev"], tracking_uri=mlflow_server, with_plots=True)
    t1 = _table(rep, "table1")
    assert t1.columns == ["method", "synth-pawsx[dev] (accuracy)", "synth-xnli (accuracy)",
                          "synth-xnli[dev] (accuracy)"]  # fmt: skip
    cells = {r[0]: r[1:] for r in t1.rows}  # 50/45/40/35, 60/55/50/45, 90/85/80/75
    assert cells["finetune"] == ["42.5 (1)", "52.5 (1)", "82.5 (1)"]
    assert {(r["task"], r["which"]) for r in t1.records if r["method"] == "finetune"} >= {
        ("synth-xnli", "avg"), ("synth-xnli[dev]", "avg")}
    assert {r.eval_split for r in rep.selection.runs if r.task.endswith("[dev]")} == {"validation"}
    assert rep.tasks == ["synth-pawsx[dev]", "synth-xnli", "synth-xnli[dev]"]
    assert _table(rep, "configs_synth-xnli[dev]").rows and _table(rep, "languages_synth-xnli[dev]").rows
    out = tmp_path / "out"
    assert cli_main(["report", "rep-dev", "--tracking-uri", mlflow_server, "--out", str(out), "--no-log"]) == 0
    printed = capsys.readouterr().out  # rich would read "[dev]" as markup and drop it: every cell is escaped
    assert "synth-xnli[dev]" in printed and "synth-pawsx[dev]" in printed
    assert "synth-xnli[dev] deep_prompt" not in printed  # every run done: no status line
    names = {p.name for p in out.iterdir()}
    assert {"configs_synth-xnli_dev.csv", "languages_synth-xnli.csv", "heatmap_synth-xnli_dev.png",
            "distance_synth-xnli_dev.png"} <= names and not [n for n in names if "[" in n]  # fmt: skip
    md = (out / "report.md").read_text()
    assert "## synth-xnli[dev]" in md and "(heatmap_synth-xnli_dev.png)" in md
    listed = json.loads((out / "report.json").read_text())["plots"]  # the PNG files as they are on disk
    assert "heatmap_synth-xnli_dev.png" in listed and set(listed) <= names


def test_terminal_tables_print_brackets_as_text() -> None:
    """Labels with "[...]" (a task scored on dev, ``method [model]``, a searched value) are text, not rich markup,
    in the report's Table 1 and in the sweep's status and results tables."""
    import io

    from rich.console import Console

    from xtuner.analysis.report import Report
    from xtuner.analysis.report.render import terminal
    from xtuner.analysis.report.runs import Selection
    from xtuner.analysis.report.tables import Table
    from xtuner.sweep.report import results_tables, status_table
    from xtuner.sweep.state import SweepState, TrialRecord

    t1 = Table("table1", "Table 1: average [over languages]", ["method", "xnli[dev] (accuracy)"],
               [["finetune [tiny-xlmr]", "52.5 (1)"]])  # fmt: skip
    rep = Report(Selection([], {}, "sqlite://", ["s"]), [], [t1], [], {}, 10, 0, notes=["note [bold]x[/bold]"])
    buf = io.StringIO()
    terminal(rep, Console(file=buf, width=100))
    text = buf.getvalue()
    for label in ("average [over languages]", "xnli[dev]", "finetune [tiny-xlmr]", "note [bold]x[/bold]"):
        assert label in text, label
    state = SweepState("s", {})
    rec = TrialRecord("s_00000", "g", "xnli", "finetune", "builtin:tiny-xlmr", 1, "accuracy",
                      {"lr": 1e-3, "layers": "[last]", "eval_split": "validation"}, ["layers"], state="done",
                      final={"dev/en/accuracy": 70.0, "test/en/accuracy": 69.0})  # fmt: skip
    state.trials[rec.trial_id] = rec
    buf = io.StringIO()
    console = Console(file=buf, width=160)
    console.print(status_table(state))
    for table in results_tables(state):
        console.print(table)
    assert buf.getvalue().count("layers=[last]") == 2


@pytest.mark.parametrize("argv, message", [
    (["report", "rep-mian"], "unknown sweep 'rep-mian'"),
    (["report", "rep-main", "--experiment", "nope"], "unknown experiment 'nope'"),
    (["report", "rep-main", "--format", "md,pdf"], "unknown format 'pdf'"),
    (["report"], "name at least one sweep"),
])  # fmt: skip
def test_bad_input_is_one_error_line(argv, message, logged, mlflow_server, capsys) -> None:
    assert cli_main([*argv, "--tracking-uri", mlflow_server, "--no-log"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    if "rep-mian" in argv:
        assert "did you mean 'rep-main'" in err[0]


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfesources: {}", "not UTF-8 text (byte 0xff at offset 0)"),
    (b"- 1\n- 2\n", "expected a mapping with 'sources'"),
    (b"sources: {p: {paper: P}}\nentries: [3]\n", "entry 1: expected a mapping"),
    (b"sources: {p: {title: P}}\nentries: [{source: p, table: T, page: 1, label: L, model: m, task: xnli, "
     b"metric: accuracy}]\n", "entry 1: KeyError"),
    (b"sources: {p: {paper: P}}\nentries: [{source: p, table: T, page: 1, label: L, model: m, task: xnli, "
     b"metric: accuracy, en: high}]\n", "entry 1: ValueError"),
])  # fmt: skip
def test_a_broken_reference_file_is_one_error_line(content, message, logged, mlflow_server, tmp_path, capsys) -> None:
    """``--reference`` that is not UTF-8, not a mapping, or has an entry of the wrong shape: one error line naming
    the file (these were UnicodeDecodeError, AttributeError, TypeError tracebacks)."""
    path = tmp_path / "ref.yaml"
    path.write_bytes(content)
    argv = ["report", "rep-main", "--tracking-uri", mlflow_server, "--no-log", "--reference", str(path),
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(path) in err[0] and message in err[0], err


def test_experiment_selects_its_sweeps(logged, mlflow_server) -> None:
    rep = report([], experiment="report-tests-2", tracking_uri=mlflow_server, with_plots=False)
    assert rep.selection.sweeps == ["rep-second"] and {r.task for r in rep.selection.runs} == {"synth-pawsx"}


def test_a_report_failure_at_the_end_of_a_sweep_is_one_warning(mlflow_server, capsys) -> None:
    from types import SimpleNamespace

    from xtuner.sweep.runner import _log_report
    from xtuner.sweep.state import SweepState

    state = SweepState("gone", {})
    state.finished, state.parent_run_id, state.parent_tracked = True, "0" * 32, True
    events = SimpleNamespace(
        tracking_uri=mlflow_server, plan=SimpleNamespace(spec=SimpleNamespace(experiment="nope", report=True))
    )
    _log_report(events, state, quiet=False)  # the sweep's experiment is not there: the report cannot be made
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: the sweep's report was not logged to MLflow")
    assert "xtuner report gone" in err[0]
