"""Runs logged straight to MLflow in the layout sweeps write (parent run tagged ``xtuner.kind=sweep``, child runs
with ``mlflow.parentRunId``, ``xtuner.*`` tags, the trial's params, ``test/<lang>/...`` metrics, the en-dev curve and
``predictions/`` written by `xtuner.metrics.examples.write_predictions`), for the report tests."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from xtuner.metrics.examples import write_predictions
from xtuner.tasks import get_task

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def correct_vector(n: int, accuracy: float, seed: int) -> np.ndarray:
    """n 0/1 values with exactly round(accuracy * n) ones, at seeded random places."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, dtype=int)
    out[rng.choice(n, size=int(round(accuracy * n)), replace=False)] = 1
    return out


def log_sweep(client: MlflowClient, sweep: str, trials: list[dict], experiment: str = "report-tests",
              uniform_keys: bool = True) -> str:  # fmt: skip
    """Log a sweep: `trials` are dicts with task, method, seed, lr (psl), status (done|pruned|failed|running),
    optional ``eval_split`` (param ``eval_split`` and, unless ``eval_split_tag`` is False, tag ``xtuner.eval_split``,
    as sweeps write them), and for done ones ``correct``: {lang: 0/1 vector} (accuracy tasks) and optional ``predictions`` (default True)
    and ``dev`` (a list of en-dev values per epoch). Returns the parent run id."""
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    parent = client.create_run(exp_id, tags={"xtuner.sweep": sweep, "xtuner.kind": "sweep",
                                             "mlflow.runName": sweep}).info.run_id  # fmt: skip
    for i, t in enumerate(trials):
        _log_trial(client, exp_id, parent, sweep, f"{sweep}_{i:05d}", t, uniform_keys)
    client.set_terminated(parent, "FINISHED")
    return parent


def _log_trial(client, exp_id, parent, sweep, trial_id, t, uniform_keys) -> None:
    task = get_task(t["task"])
    main = task.main_metric
    state = {"done": "done", "pruned": "pruned", "failed": "error", "running": "running"}[t["status"]]
    tags = {"mlflow.parentRunId": parent, "xtuner.sweep": sweep, "xtuner.trial_id": trial_id,
            "xtuner.task": t["task"], "xtuner.method": t["method"], "xtuner.state": state}  # fmt: skip
    if t["status"] == "failed":
        tags["xtuner.error"] = "RuntimeError: boom"
    if t["status"] == "pruned":
        tags["xtuner.pruned_at_epoch"] = "1"
    if "eval_split" in t and t.get("eval_split_tag", True):
        tags["xtuner.eval_split"] = t["eval_split"]
    run_id = client.create_run(exp_id, tags=tags).info.run_id
    params = {"task": t["task"], "method": t["method"], "model": t.get("model", "builtin:tiny-xlmr"),
              "seed": str(t["seed"]), "lr": str(t["lr"]), "epochs": "2", "trial_id": trial_id,
              "predictions_dir": f"/storage/{sweep}/predictions/{trial_id}",
              "warm_dir": f"/cache/{trial_id}"}  # paths that differ per trial: not settings  # fmt: skip
    if "psl" in t:
        params["psl"] = str(t["psl"])
    if "eval_split" in t:
        params["eval_split"] = t["eval_split"]
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    now = int(time.time() * 1000)
    dev = t.get("dev", [50.0, 60.0] if t["status"] == "done" else [40.0])
    metrics = [Metric(f"dev/en/{main}", v, now, step) for step, v in enumerate(dev, 1)]
    if t["status"] == "done":
        scores = {lang: 100.0 * float(np.mean(c)) for lang, c in t["correct"].items()}
        others = [v for k, v in scores.items() if k != "en"]
        final = {f"best/dev/en/{main}": max(dev)}
        for lang, v in scores.items():
            final[f"test/{lang}/{main}"] = v
        final[f"test/avg/{main}"] = float(np.mean(list(scores.values())))
        final[f"test/gap/{main}"] = scores["en"] - float(np.mean(others))
        if uniform_keys:
            final.update(
                {k.replace(f"/{main}", "/main"): v for k, v in final.items() if k.startswith("test/")}
            )
            final["test/others/main"] = float(np.mean(others))
            final["best/dev/en/main"] = max(dev)
        metrics += [Metric(k, v, now, 0) for k, v in final.items()]
    client.log_batch(run_id, metrics=metrics)
    if t["status"] == "done" and t.get("predictions", True):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "predictions"
            for lang, c in t["correct"].items():
                gold = [i % 3 for i in range(len(c))]
                pred = [g if ok else (g + 1) % 3 for g, ok in zip(gold, c, strict=True)]
                write_predictions(folder, task, lang, [f"{lang}-{i}" for i in range(len(c))], pred, gold)
            client.log_artifacts(run_id, str(folder), "predictions")
    if t["status"] != "running":
        client.set_terminated(run_id, "FINISHED" if t["status"] in ("done", "pruned") else "FAILED")
