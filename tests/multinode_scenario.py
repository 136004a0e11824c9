"""A tiny sweep on a real multi-node Ray cluster, run as its own process (the pytest process already holds a Ray).

`ray.cluster_utils.Cluster` starts a head without CPUs and two worker nodes with one declared GPU each (trials
still compute on the CPU: torch here has no CUDA). The driver connects with ``ray.init(address=...)`` and then calls
`run_sweep`, which uses the Ray it finds. Four deep_prompt trials ask for half a GPU each, so they can only all run
at once if two share each node's single GPU.

While the sweep runs a thread samples, from the driver, (1) the placement groups Tune created (state, node of the
bundle, resources) and (2) the worker processes of each node (children of the node's raylet). Afterwards each
trial's process id (Tune's ``pid`` in its last result, from the experiment state) gives the node it ran on. The
result (per trial: state, node, MLflow run id; per node: the most trial placement groups at once) is written as
JSON for tests/test_multinode.py to check.

``--scenario remove-node``: two worker nodes with one CPU each, two finetune trials of one CPU each (one per
node), ``max_failures: 2``. Once both trials have reported their first epoch (a checkpoint in the shared storage),
the node running one of them is removed (``Cluster.remove_node``, which kills its raylet and workers). Tune sees
the trial fail, and reschedules it from its last checkpoint on the surviving node once that node is free. The
JSON names the victim (trial, node, pid, reports before) and the final state of every trial.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import psutil
import ray
from faults import wait_for_state
from ray.cluster_utils import Cluster

from xtuner.sweep.runner import load_plan, run_sweep
from xtuner.sweep.state import STATE_FILE, SweepState

PSL, CPU, GPU = 4, 0.5, 0.5
LRS = [1.0e-2, 3.0e-3, 1.0e-3, 3.0e-2]
TINY = {"max_train_examples": 64, "max_eval_examples": 16, "max_seq_length": 32, "batch_size": 16,
        "eval_batch_size": 16, "languages": ["en", "s3"]}  # fmt: skip


class Sampler(threading.Thread):
    """Samples placement groups and raylet children every `period` seconds until stopped."""

    def __init__(self, raylets: dict[str, int], period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.raylets, self.period = raylets, period
        self.pid_node: dict[int, str] = {}
        self.pg_node: dict[str, str] = {}  # placement group id -> node of its (single) bundle
        self.pg_resources: dict[str, dict[str, float]] = {}
        self.peak: dict[str, int] = {}  # node -> most trial placement groups created there at once
        self.peak_total = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()

    def sample(self) -> None:
        for node_id, pid in self.raylets.items():
            try:
                for child in psutil.Process(pid).children(recursive=True):
                    self.pid_node.setdefault(child.pid, node_id)
            except psutil.Error:
                pass
        now: dict[str, int] = {}
        for pg_id, pg in ray.util.placement_group_table().items():
            if pg.get("state") != "CREATED":
                continue
            nodes = set(pg.get("bundles_to_node_id", {}).values())
            if len(nodes) != 1:
                continue
            node = nodes.pop()
            self.pg_node[pg_id] = node
            self.pg_resources[pg_id] = {k: float(v) for k, v in pg["bundles"][0].items()}
            now[node] = now.get(node, 0) + 1
        for node, n in now.items():
            self.peak[node] = max(self.peak.get(node, 0), n)
        self.peak_total = max(self.peak_total, sum(now.values()))


def trial_pids(exp_dir: Path) -> dict[str, int]:
    """trial id -> pid of the process that ran it, from Tune's experiment state (each trial's last result)."""
    files = sorted(exp_dir.glob("experiment_state-*.json"))
    if not files:
        return {}
    raw = json.loads(files[-1].read_text())
    out: dict[str, int] = {}
    for trial_json, run_meta in raw.get("trial_data", []):
        trial = json.loads(trial_json)
        meta = json.loads(run_meta)
        last = meta.get("last_result") or {}
        if "pid" in last:
            out[str(trial.get("trial_id"))] = int(last["pid"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", choices=["placement", "remove-node"], default="placement")
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    work = Path(args.workdir)
    # a private Ray temp folder (short: it holds unix sockets), so that the cluster's address file does not replace
    # the one other Ray users on this machine find with address="auto"
    ray_tmp = tempfile.mkdtemp(prefix="xtmn-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = ray_tmp
    try:
        run = run_scenario if args.scenario == "placement" else run_removal
        return run(args.tracking_uri, args.model, work, Path(args.out))
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def run_scenario(tracking_uri: str, model: str, work: Path, out: Path) -> int:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    head = cluster.head_node.node_id
    raylets = {n.node_id: n.all_processes["raylet"][0].process.pid for n in workers}
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
    sampler = Sampler(raylets)
    sampler.start()
    spec: dict[str, Any] = {
        "name": "multinode",
        "model": model,
        "tasks": ["synth-xnli"],
        "methods": {"deep_prompt": {"lr": LRS, "psl": [PSL]}},
        "epochs": 1,
        "max_concurrent": 4,
        "resources": {"methods": {"deep_prompt": {"cpu": CPU, "gpu": GPU}}},
        "trial": dict(TINY),
        "tracking": {"uri": tracking_uri, "experiment": "test-multinode"},
        "storage": str(work / "results"),
    }
    t0 = time.time()
    try:
        state = run_sweep(load_plan(spec), quiet=True)
    finally:
        sampler.stop()
        ray.shutdown()
        cluster.shutdown()
    seconds = time.time() - t0
    pids = trial_pids(work / "results" / "multinode")
    result = {
        "seconds": seconds,
        "worker_nodes": sorted(raylets),
        "head_node": head,
        "finished": state.finished,
        "parent_run_id": state.parent_run_id,
        "trials": {
            tid: {
                "state": r.state,
                "run_id": r.run_id,
                "lr": r.params.get("lr"),
                "pid": pids.get(tid),
                "node": sampler.pid_node.get(pids.get(tid, -1)),
            }
            for tid, r in state.trials.items()
        },
        "placement_groups": {
            pg: {"node": node, "resources": sampler.pg_resources[pg]} for pg, node in sampler.pg_node.items()
        },
        "peak_per_node": sampler.peak,
        "peak_total": sampler.peak_total,
    }
    out.write_text(json.dumps(result, indent=1, sort_keys=True))
    return 0


def run_removal(tracking_uri: str, model: str, work: Path, out: Path) -> int:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    raylets = {n.node_id: n.all_processes["raylet"][0].process.pid for n in workers}
    by_id = {n.node_id: n for n in workers}
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
    sampler = Sampler(raylets)
    sampler.start()
    spec: dict[str, Any] = {
        "name": "remove-node",
        "model": model,
        "tasks": ["synth-xnli"],
        "methods": {"finetune": {"lr": [1.0e-3, 3.0e-3]}},
        "epochs": 3,
        "max_concurrent": 2,
        "max_failures": 2,
        "resources": {"cpu": 1},
        "trial": {**TINY, "max_train_examples": 768},
        "tracking": {"uri": tracking_uri, "experiment": "test-remove-node"},
        "storage": str(work / "results"),
    }
    state_file = work / "results" / "remove-node" / STATE_FILE
    victim: dict[str, Any] = {}

    def both_reported_on_a_known_node(st: SweepState) -> tuple | None:
        running = [r for r in st.trials.values() if r.state == "running" and r.dev_curve and r.pid]
        if len(running) != 2:
            return None
        sampler.sample()
        node = sampler.pid_node.get(running[0].pid)
        return (running[0], node, sampler.pid_node.get(running[1].pid)) if node in by_id else None

    def remove_when_both_reported() -> None:
        found = wait_for_state(str(state_file), both_reported_on_a_known_node, timeout=180)
        if found:
            rec, node, other = found
            victim.update(trial_id=rec.trial_id, pid=rec.pid, node=node, reports=rec.reports, run_id=rec.run_id,
                          other_node=other)  # fmt: skip
            cluster.remove_node(by_id[node])
            victim["removed_at"] = time.time()

    remover = threading.Thread(target=remove_when_both_reported, daemon=True)
    remover.start()
    t0 = time.time()
    try:
        state = run_sweep(load_plan(spec), quiet=True)
    finally:
        remover.join(timeout=5)
        sampler.stop()
        ray.shutdown()
        cluster.shutdown()
    result = {
        "seconds": time.time() - t0,
        "worker_nodes": sorted(raylets),
        "victim": victim,
        "finished": state.finished,
        "parent_run_id": state.parent_run_id,
        "trials": {
            tid: {"state": r.state, "run_id": r.run_id, "pid": r.pid, "node": sampler.pid_node.get(r.pid or -1),
                  "failures": r.failures, "started": r.started, "reports": r.reports,
                  "epochs": [e for e, _ in r.dev_curve]}
            for tid, r in state.trials.items()
        },  # fmt: skip
    }
    out.write_text(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
