"""A sweep on a real multi-node Ray cluster (head without CPUs + two worker nodes with one declared GPU each), run by
tests/multinode_scenario.py in its own process because this one already holds the session's Ray.

Four deep_prompt trials asking for half a GPU each: all finish, they run on both worker nodes (none on the head),
two share each node's single GPU at once (their placement groups: 0.5 GPU each, two created on one node at the same
time), and the driver-side MLflow tracking (the session's real `mlflow server`) has one child run per trial, with
per-language test metrics, under one parent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow  # about 40 s on 2 loaded cores (a 3-node Ray cluster, 4 real trials)

SCENARIO = Path(__file__).with_name("multinode_scenario.py")


@pytest.fixture(scope="module")
def scenario(mlflow_server: str, tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_scenario("placement", mlflow_server, tiny_model, tmp_path_factory)


@pytest.fixture(scope="module")
def removal(mlflow_server: str, tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_scenario("remove-node", mlflow_server, tiny_model, tmp_path_factory)


def run_scenario(name: str, mlflow_server: str, model: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp(name)
    out = work / "result.json"
    cmd = [sys.executable, str(SCENARIO), "--scenario", name, "--tracking-uri", mlflow_server, "--model", model,
           "--workdir", str(work), "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_trials_spread_over_both_worker_nodes(scenario: dict) -> None:
    trials = scenario["trials"]
    assert scenario["finished"] and len(trials) == 4
    assert sorted(t["lr"] for t in trials.values()) == [1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2]
    assert [t["state"] for t in trials.values()] == ["done"] * 4
    workers = set(scenario["worker_nodes"])
    assert len(workers) == 2 and scenario["head_node"] not in workers
    assert {t["node"] for t in trials.values()} == workers  # every trial found on a worker node; both used


def test_two_trials_share_each_declared_gpu(scenario: dict) -> None:
    pgs = scenario["placement_groups"]
    assert len(pgs) == 4  # one per trial (actors are reused only across trials that run one after another)
    assert all(pg["resources"] == {"CPU": 0.5, "GPU": 0.5} for pg in pgs.values())
    assert {pg["node"] for pg in pgs.values()} == set(scenario["worker_nodes"])
    # both worker nodes held two half-GPU trials at the same moment: their single GPU was shared
    assert scenario["peak_per_node"] == {node: 2 for node in scenario["worker_nodes"]}
    assert scenario["peak_total"] == 4


def test_every_trial_has_an_mlflow_child_run(scenario: dict, mlflow_server: str) -> None:
    client = MlflowClient(mlflow_server)
    parent = client.get_run(scenario["parent_run_id"])
    assert parent.info.status == "FINISHED"
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(r.info.run_id for r in runs) == sorted(t["run_id"] for t in scenario["trials"].values())
    for run in runs:
        m = run.data.metrics
        assert run.info.status == "FINISHED" and run.data.params["method"] == "deep_prompt"
        assert run.data.params["psl"] == "4"
        assert {"test/en/accuracy", "test/s3/accuracy", "test/avg/accuracy"} <= set(m)
        assert 0.0 <= m["test/en/accuracy"] <= 100.0


def test_trial_of_a_removed_node_is_rescheduled_and_finishes(removal: dict, mlflow_server: str) -> None:
    victim, trials = removal["victim"], removal["trials"]
    assert victim, "no node was removed (the trials never ran on both nodes at once)"
    assert removal["finished"] and [t["state"] for t in trials.values()] == ["done", "done"]
    assert victim["node"] != victim["other_node"] and {victim["node"], victim["other_node"]} == set(
        removal["worker_nodes"]
    )
    moved = trials[victim["trial_id"]]
    assert moved["failures"] >= 1 and moved["started"] >= 2
    assert moved["node"] == victim["other_node"]  # finished on the surviving node
    assert moved["epochs"] == [1.0, 2.0, 3.0]  # every epoch once
    assert moved["reports"] <= victim["reports"] + 2  # resumed from its checkpoint, not from scratch
    client = MlflowClient(mlflow_server)
    parent = client.get_run(removal["parent_run_id"])
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(r.info.run_id for r in runs) == sorted(t["run_id"] for t in trials.values())  # no duplicate
    assert moved["run_id"] == victim["run_id"] and all(r.info.status == "FINISHED" for r in runs)
    steps = [m.step for m in client.get_metric_history(victim["run_id"], "dev/en/accuracy")]
    assert steps == [1, 2, 3]
