"""The imports a trial needs, done ahead of its start: a local Ray runs `warm_imports` in every worker process as
it starts (``worker_process_setup_hook``, `xtuner.sweep.tune.init_ray`). Ray starts a pool of idle workers when the
driver connects and hands one to the first trial, so the first trial of each worker no longer pays for torch,
transformers' Trainer, datasets, peft and seqeval (about 3 s on the dev box); the imports run while the driver opens
MLflow and Tune starts.

Imports only: what a trial computes does not change. A module that fails to import is skipped here; the trial
raises the error itself when it imports it. ``XTUNER_WARM_WORKERS=0`` turns the hook off.

One thing the early import would change: OpenMP reads ``OMP_NUM_THREADS`` when torch loads, and Ray sets it (to the
trial's CPUs) only when it hands the worker a trial, so a warmed torch would use every core. `match_ray_threads`,
called by the trainable before the trial, gives torch the thread count Ray set, as a cold import would have.
"""

from __future__ import annotations

import importlib
import os
import sys

MODULES = (
    "torch",
    "transformers",
    "transformers.trainer",
    "datasets",
    "peft",
    "seqeval.metrics",
    "xtuner.trial.run",
    "xtuner.trial.trainer",
    "xtuner.trial.evaluate",
    "xtuner.data.cache",
    "xtuner.data.preprocess",
    "xtuner.methods._deep_prompt_model",
    "xtuner.methods._soft_prompt_model",
)


def warm_imports() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - the trial raises it when it needs the module
            continue
    try:  # the registries: every task and method module (their discovery imports them)
        from xtuner.methods import method_names
        from xtuner.tasks import task_names

        task_names()
        method_names()
    except Exception:  # noqa: BLE001 - as above
        pass


def match_ray_threads() -> None:
    """torch's intra-op threads = ``OMP_NUM_THREADS`` (set by Ray for this trial), when torch was loaded before."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    torch = sys.modules.get("torch")
    if torch is not None and threads.isdigit() and int(threads) > 0 and torch.get_num_threads() != int(threads):
        torch.set_num_threads(int(threads))
