"""Checks of a finished sweep's exports, run on the folder a sweep test has just made (no sweep of their own):
`xtuner sweep status NAME --json`, `xtuner sweep list`, `xtuner.sweep.results` and Ray's own `ExperimentAnalysis`
on the sweep folder; and the progress lines the run printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xtuner.cli import main as cli_main
from xtuner.sweep.state import SweepState


def check_progress_lines(out: str, state: SweepState) -> None:
    """One ``dev`` line per en-dev evaluation of each trial (epoch, metric, elapsed); every line within 100 columns."""
    lines = out.splitlines()
    assert all(len(line) <= 100 for line in lines if line.startswith("[")), [ln for ln in lines if len(ln) > 100]
    for rec in state.trials.values():
        dev = [ln for ln in lines if ln.split("] ", 1)[-1].startswith("dev ") and f" {rec.trial_id} " in ln]
        assert len(dev) == len(rec.dev_curve), (rec.trial_id, dev)
        for line, (epoch, value) in zip(dev, rec.dev_curve, strict=True):
            assert f"epoch {epoch:g}: {rec.main_metric} {value:.1f} (" in line and line.endswith(")"), line


def check_exports(storage: Path, name: str, state: SweepState, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert cli_main(["sweep", "status", name, "--storage", str(storage), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sweep"] == name and data["state"] == "finished" and data["finished"] is True
    assert data["tracking"]["parent_run_id"] == state.parent_run_id and data["tracking"]["pending"] == []
    assert {t["trial_id"] for t in data["trials"]} == set(state.trials)
    for t in data["trials"]:
        rec = state.trials[t["trial_id"]]
        assert t["status"] == rec.state and t["config"]["lr"] == rec.params["lr"] and t["metrics"] == rec.final
        assert t["run_id"] == rec.run_id and t["started_at"] and t["ended_at"] and t["seconds"] > 0

    assert cli_main(["sweep", "list", "--storage", str(storage), "--json"]) == 0
    listed = {s["sweep"]: s for s in json.loads(capsys.readouterr().out)}
    assert listed[name]["state"] == "finished" and listed[name]["trials"] == len(state.trials)
    assert listed[name]["counts"] == {k: v for k, v in state.counts().items() if v}
    assert cli_main(["sweep", "list", "--storage", str(storage)]) == 0
    table = capsys.readouterr().out
    assert name in table and "finished" in table and all(len(line) <= 100 for line in table.splitlines())

    from xtuner.sweep import results

    df = results(name, storage=str(storage))
    assert sorted(df["trial_id"]) == sorted(state.trials) and "config/lr" in df.columns
    for _, row in df.iterrows():
        rec = state.trials[row["trial_id"]]
        assert row["status"] == rec.state and row["config/lr"] == rec.params["lr"]
        for key, value in rec.final.items():
            assert row[key] == pytest.approx(value)

    # what a Ray user tries: Ray's own analysis of the sweep folder reads each trial's result.json
    from ray.tune import ExperimentAnalysis

    ray_df = ExperimentAnalysis(str(storage / name)).dataframe()
    assert sorted(ray_df["trial_id"]) == sorted(state.trials)
    for _, row in ray_df.iterrows():
        rec = state.trials[row["trial_id"]]
        key = f"test/en/{rec.main_metric}"
        if rec.state == "done":
            assert row[key] == pytest.approx(rec.final[key])
    assert not list((storage / name).glob("trial_*/params.pkl"))  # no unsigned pickle for a resume to trust
