"""MLflow as the comparison surface, on the session's real `mlflow server` and local Ray with a small real sweep
(synth-udpos; fine-tuning at a good, a useless and an exploding learning rate; deep prompt tuning): every child run
carries the task-independent keys (``test/<lang>/main``, ``test/others/main``, ``test/gap/main``, ``dev/en/main``
per dev evaluation), the stepped training loss, and its per-example test predictions under ``predictions/``, which
re-score exactly to the logged test metric.
"""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from xtuner.metrics.examples import read_predictions, score
from xtuner.sweep.runner import load_plan, run_sweep

pytestmark = pytest.mark.slow  # one real sweep of 4 tiny trials

TINY = {"max_train_examples": 64, "max_eval_examples": 24, "max_seq_length": 32, "batch_size": 16,
        "eval_batch_size": 32, "languages": ["en", "s2", "s5"]}  # fmt: skip
LANGS = ("en", "s2", "s5")


def layout_spec(name: str, tmp, uri: str, model: str) -> dict:
    return {
        "name": name, "model": model, "tasks": ["synth-udpos"], "epochs": 2, "max_concurrent": 1,
        "methods": {"finetune": {"lr": [1.0e-3, 1.0e-8, 1.0e30]}, "deep_prompt": {"lr": [3.0e-2], "psl": [4]}},
        "scheduler": {"type": "asha", "grace_period": 1}, "trial": dict(TINY),
        "tracking": {"uri": uri, "experiment": f"test-{name}"}, "storage": str(tmp / "results"),
    }  # fmt: skip


@pytest.fixture(scope="module")
def sweep(ray_cluster, mlflow_server, tiny_model, tmp_path_factory):
    """The finished sweep's state and a client; the run order puts the good lr first, so that ASHA stops 1e-8."""
    tmp = tmp_path_factory.mktemp("layout")
    raw = layout_spec("layout", tmp, mlflow_server, tiny_model)
    seed = next(s for s in range(50) if load_plan(raw | {"search_seed": s}).run_order()[0][1]["lr"] == 1.0e-3)
    state = run_sweep(load_plan(raw | {"search_seed": seed}), quiet=True)
    return state, MlflowClient(mlflow_server), tmp


def test_every_finished_trial_logs_the_uniform_keys_and_the_training_loss(sweep) -> None:
    state, client, _ = sweep
    done = [r for r in state.trials.values() if r.state == "done"]
    assert {(r.method, r.params["lr"]) for r in done} == {("finetune", 1e-3), ("deep_prompt", 3e-2)}
    for rec in done:
        run = client.get_run(rec.run_id)
        m = run.data.metrics
        for lang in LANGS:
            assert m[f"test/{lang}/main"] == m[f"test/{lang}/f1"]
        assert m["test/others/main"] == pytest.approx((m["test/s2/f1"] + m["test/s5/f1"]) / 2)
        assert m["test/gap/main"] == pytest.approx(m["test/en/f1"] - m["test/others/main"])
        assert m["test/avg/main"] == m["test/avg/f1"] and m["best/dev/en/main"] == m["best/dev/en/f1"]
        dev_main = client.get_metric_history(rec.run_id, "dev/en/main")
        dev_f1 = client.get_metric_history(rec.run_id, "dev/en/f1")
        assert len(dev_main) == 2 and [(h.step, h.value) for h in dev_main] == [(h.step, h.value) for h in dev_f1]  # fmt: skip
        loss = client.get_metric_history(rec.run_id, "train/loss")
        steps = [h.step for h in loss]
        assert len(steps) >= 4 and steps == sorted(set(steps)) and all(h.value > 0 for h in loss)
        assert [[float(h.step), h.value] for h in loss] == rec.train_loss  # the state keeps them for `sync`


def test_predictions_are_artifacts_that_rescore_to_the_logged_metric(sweep, tmp_path) -> None:
    state, client, tmp = sweep
    for rec in state.trials.values():
        arts = {f.path for f in client.list_artifacts(rec.run_id, "predictions")}
        if rec.state != "done":  # pruned and failed trials never reach the test evaluation
            assert not arts and rec.predictions is None
            continue
        assert arts == {"predictions/meta.json", *(f"predictions/{lang}.parquet" for lang in LANGS)}
        assert rec.predictions == str(tmp / "results" / "layout" / "predictions" / rec.trial_id)
        folder = client.download_artifacts(rec.run_id, "predictions", str(tmp_path / rec.trial_id))
        meta, frames = read_predictions(folder)
        assert meta["kind"] == "span_f1" and meta["task"] == "synth-udpos"
        logged = client.get_run(rec.run_id).data.metrics
        for lang, frame in frames.items():
            assert score(meta["kind"], frame) == pytest.approx(logged[f"test/{lang}/main"], abs=1e-9)
