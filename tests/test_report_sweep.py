"""`xtuner report` on a real small sweep (real Ray trials, a real MLflow server): the sweep logs its report into its
parent run at the end, and `xtuner report` reads it back."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from xtuner.cli import main as cli_main
from xtuner.sweep.runner import load_plan, run_sweep

pytestmark = pytest.mark.slow  # four tiny trials on Ray

TINY = {"max_train_examples": 64, "max_eval_examples": 32, "max_seq_length": 32, "batch_size": 16,
        "eval_batch_size": 32, "languages": ["en", "s3"]}  # fmt: skip


def test_sweep_logs_its_report_and_xtuner_report_reads_it(ray_cluster, mlflow_server, tiny_model, tmp_path,
                                                          capsys) -> None:  # fmt: skip
    raw = {"name": "rep-sweep", "model": tiny_model, "tasks": ["synth-xnli"],
           "methods": {"finetune": {"lr": [1.0e-3]}, "deep_prompt": {"lr": [1.0e-2], "psl": [4]}},
           "seeds": [1, 2], "epochs": 1, "max_concurrent": 2, "trial": dict(TINY),
           "tracking": {"uri": mlflow_server, "experiment": "test-rep-sweep"},
           "storage": str(tmp_path / "results")}  # fmt: skip
    state = run_sweep(load_plan(raw))
    assert state.finished and all(r.state == "done" for r in state.trials.values())
    out = capsys.readouterr()
    assert "logged under report/ of the sweep's parent run" in out.out and "warning" not in out.err
    client = MlflowClient(mlflow_server)
    files = {f.path for f in client.list_artifacts(state.parent_run_id, "report")}
    assert {"report/report.html", "report/report.md", "report/table1.csv", "report/gap.png",
            "report/heatmap_synth-xnli.png", "report/dev_synth-xnli.png", "report/distance_synth-xnli.png"} <= files  # fmt: skip

    assert cli_main(["report", "rep-sweep", "--tracking-uri", mlflow_server, "--out", str(tmp_path / "o"),
                     "--no-log"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "Table 1" in text and "synth-xnli (accuracy)" in text
    rows = [line for line in text.splitlines() if line.startswith("│ ")]
    assert any("finetune" in r and "(2)" in r for r in rows) and any(
        "deep_prompt" in r and "(2)" in r for r in rows
    )
    md = (tmp_path / "o" / "report.md").read_text()
    assert "| s3 |" in md and "deep_prompt - finetune" in md
