"""A sweep with an intermediate variant axis on the real components (local Ray, a real `mlflow server`, the tiny
encoder, the synthetic tasks): every trial's run shows its variant, the stage-2 results and, with a stage 1, the
stage-1 metrics and key; one stage 1 per distinct key, kept in the storage's ``_intermediate/`` folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from xtuner.sweep.runner import load_plan, run_sweep

pytestmark = pytest.mark.slow

TINY = {"max_train_examples": 64, "max_eval_examples": 32, "max_seq_length": 32, "batch_size": 16,
        "eval_batch_size": 32, "languages": ["en", "s1", "s2"]}  # fmt: skip


def test_sweep_runs_each_stage1_once_and_logs_both_stages(
    ray_cluster, mlflow_server, tiny_model, tmp_path: Path
) -> None:
    raw = {
        "name": "xst", "model": tiny_model, "epochs": 1, "max_concurrent": 2, "trial": dict(TINY),
        "tasks": {"synth-pawsx": {"intermediate": {
            "variant": ["none", "en", "multi"], "task": "synth-xnli", "languages": ["en", "s1"], "lr": 1.0e-4,
            "epochs": 1, "max_train_examples": 64, "max_seq_length": 32, "batch_size": 16}}},
        "methods": {"finetune": {"lr": [3.0e-4, 1.0e-3]}},
        "tracking": {"uri": mlflow_server, "experiment": "test-xst"}, "storage": str(tmp_path / "results"),
    }  # fmt: skip
    state = run_sweep(load_plan(raw))
    assert state.finished and [r.state for r in state.trials.values()] == ["done"] * 6
    client = MlflowClient(mlflow_server)
    exp = client.get_run(state.parent_run_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.mlflow.parentRunId = '{state.parent_run_id}'")
    by_variant: dict[str, list] = {}
    for run in runs:
        by_variant.setdefault(run.data.params["intermediate_variant"], []).append(run)
        assert '"task": "synth-xnli"' in run.data.params["intermediate"]
        assert {"test/en/accuracy", "test/s1/accuracy", "test/avg/accuracy"} <= set(run.data.metrics)
    assert sorted(by_variant) == ["en", "multi", "none"] and all(len(v) == 2 for v in by_variant.values())
    assert not any(k.startswith("stage1/") for r in by_variant["none"] for k in r.data.metrics)
    assert not any("xtuner.intermediate.key" in r.data.tags for r in by_variant["none"])
    keys = set()
    for variant in ("en", "multi"):
        pair = by_variant[variant]
        key = {r.data.tags["xtuner.intermediate.key"] for r in pair}
        assert len(key) == 1  # both learning rates start from one stage 1 ...
        assert sorted(r.data.metrics["stage1/reused"] for r in pair) == [0.0, 1.0]  # ... trained once
        for r in pair:
            m = r.data.metrics
            assert (
                0 <= m["stage1/dev/en/main"] <= 100 and m["stage1/seconds"] > 0 and m["stage1/examples"] == 64
            )
        keys |= key
    assert by_variant["multi"][0].data.metrics["stage1/examples/s1"] == 32  # match_en: 64 split over en, s1
    stored = sorted(p.name for p in (tmp_path / "results" / "_intermediate").iterdir() if p.is_dir())
    assert stored == sorted(keys)

    # the report's intermediate section (xtuner/intermediate/report.py), from MLflow
    from xtuner.analysis.report import report
    from xtuner.analysis.report.render import markdown

    rep = report(["xst"], tracking_uri=mlflow_server, resamples=200)
    tables = {t.key: t for t in rep.tables}
    summary, per_lang = tables["intermediate_synth-pawsx"], tables["intermediate_languages_synth-pawsx"]
    assert [(r["method"], r["variant"]) for r in summary.records] == [
        ("finetune", v) for v in ("none", "en", "multi")
    ]
    none = summary.records[0]
    assert none["seen_languages"] == ["s1"] and none["unseen_languages"] == ["s2"]
    runs = {(r.data.params["intermediate_variant"], float(r.data.params["lr"])): r.data.metrics for r in runs}
    for rec in summary.records[1:]:
        chosen = {v: max((lr for (var, lr) in runs if var == v), key=lambda lr, v=v: runs[(v, lr)]["best/dev/en/main"])
                  for v in ("none", rec["variant"])}  # fmt: skip
        a, b = runs[(rec["variant"], chosen[rec["variant"]])], runs[("none", chosen["none"])]
        assert rec["delta_seen"] == pytest.approx(a["test/s1/main"] - b["test/s1/main"])
        assert rec["delta_unseen"] == pytest.approx(a["test/s2/main"] - b["test/s2/main"])
        assert rec["delta_avg"] == pytest.approx(a["test/avg/main"] - b["test/avg/main"])
    assert any("2 stage 1s trained" in n for n in summary.notes)  # of the whole sweep
    assert [r["group"] for r in per_lang.records] == ["source", "seen", "unseen", ""]
    assert all(
        r["p finetune en - none"] is not None for r in per_lang.records[:3]
    )  # bootstrap on predictions
    assert any(
        line.startswith("synth-pawsx: multi > none (finetune) on ") and "(seen: " in line
        for line in rep.notes
    )
    assert "intermediate_synth-pawsx.png" in rep.plots
    assert "synth-pawsx: intermediate-task variants vs none" in markdown(rep)
