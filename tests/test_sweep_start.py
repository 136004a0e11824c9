"""A sweep's start-up off the critical path: the MLflow parent run opens in a thread while Tune starts (its failure
is still the sweep's one error), and a local Ray's workers import what trials need as they start, with torch's
threads set to the trial's CPUs as a cold import would have them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from xtuner.errors import XtunerError
from xtuner.sweep.runner import load_plan, run_sweep

TINY = {"max_train_examples": 32, "max_eval_examples": 16, "max_seq_length": 32, "batch_size": 16,
        "eval_batch_size": 16, "languages": ["en", "s3"]}  # fmt: skip


def spec(tmp: Path, model: str, uri: str, experiment: str) -> dict:
    return {"name": "start", "model": model, "tasks": ["synth-xnli"], "methods": {"finetune": {"lr": [1.0e-3]}},
            "epochs": 1, "max_concurrent": 1, "trial": dict(TINY), "storage": str(tmp / "results"),
            "tracking": {"uri": uri, "experiment": experiment}}  # fmt: skip


@pytest.mark.slow
def test_parent_run_opened_in_the_background_fails_as_the_one_error(ray_cluster, tiny_model, tmp_path) -> None:
    # (a sweep whose parent run opens in the background: tests/test_sweep.py builds whole run trees that way)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    # a deleted experiment of that name: MLflow refuses the parent run, which only the background thread sees
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(XtunerError, match=r"MLflow tracking at sqlite:.*experiment"):
        run_sweep(load_plan(spec(tmp_path, tiny_model, uri, "gone")), quiet=True)
    saved = json.loads((tmp_path / "results" / "start" / "xtuner_sweep.json").read_text())
    assert saved["parent_run_id"] is None and saved["name"] == "start"


def test_local_ray_workers_warm_their_imports(ray_cluster) -> None:
    import ray

    hook = ray.get_runtime_context().runtime_env.get("worker_process_setup_hook")
    assert hook == "xtuner.trial.warm.warm_imports"


WARM = r"""
import json, os, sys
os.environ.pop("OMP_NUM_THREADS", None)
from xtuner.trial.warm import MODULES, match_ray_threads, warm_imports
warm_imports()
loaded = [m for m in MODULES if m in sys.modules]
import torch
before = torch.get_num_threads()
os.environ["OMP_NUM_THREADS"] = "1"  # what Ray sets when it hands the worker a 1-CPU trial
match_ray_threads()
print(json.dumps({"loaded": loaded, "before": before, "after": torch.get_num_threads(), "cpus": os.cpu_count()}))
"""


def test_warm_imports_load_the_trial_modules_and_keep_the_trial_threads() -> None:
    proc = subprocess.run([sys.executable, "-c", WARM], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    from xtuner.trial.warm import MODULES

    assert out["loaded"] == list(MODULES)
    assert out["after"] == 1
    if out["cpus"] and out["cpus"] > 1:
        assert out["before"] > 1  # what the early import would have left a 1-CPU trial with
