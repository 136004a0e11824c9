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
        # MLflow holds scores rounded to 4 decimals (the runs table reads 84.0816, not 84.08163265306122)
        assert m["test/others/main"] == pytest.approx((m["test/s2/f1"] + m["test/s5/f1"]) / 2, abs=2e-4)
        assert m["test/gap/main"] == pytest.approx(m["test/en/f1"] - m["test/others/main"], abs=2e-4)
        assert m["test/en/main"] == round(rec.final["test/en/f1"], 4)
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
            assert round(score(meta["kind"], frame), 4) == logged[f"test/{lang}/main"]
            full = rec.final[f"test/{lang}/main"]  # the state keeps full precision
            assert score(meta["kind"], frame) == pytest.approx(full, abs=1e-9)


# ------------------------------------------------------------------------------------------------ issue 15: layout
def test_run_names_say_task_method_searched_values_and_seed(sweep) -> None:
    state, client, _ = sweep
    names = {
        (r.method, r.params["lr"]): client.get_run(r.run_id).info.run_name for r in state.trials.values()
    }
    assert names == {("finetune", 1e-3): "synth-udpos FT lr=1e-3 s1", ("finetune", 1e-8): "synth-udpos FT lr=1e-8 s1",
                     ("finetune", 1e30): "synth-udpos FT lr=1e30 s1",
                     ("deep_prompt", 3e-2): "synth-udpos DPT lr=0.03 psl=4 s1"}  # fmt: skip


def test_params_are_the_complete_resolved_config_as_written(sweep) -> None:
    from xtuner.methods import get_method, validate_settings
    from xtuner.trial.config import TrialConfig

    state, client, _ = sweep
    for rec in state.trials.values():
        params = client.get_run(rec.run_id).data.params
        cfg = TrialConfig.from_flat(rec.params)
        settings = validate_settings(cfg.method, cfg.method_settings).model_dump()
        expected = {k for k, v in cfg.model_dump().items() if v is not None and k != "method_settings"}
        own = {k for k, v in settings.items() if v is not None}
        assert expected | own | {"trial_id"} == set(params)  # every setting that has a value
        assert params["epochs"] == "2" and params["warmup_ratio"] == "0" and params["weight_decay"] == "0"
        assert (
            float(params["lr"]) == rec.params["lr"]
            and params["seed"] == "1"
            and params["method"] == rec.method
        )
        assert params["languages"] == '["en", "s2", "s5"]' and params["max_train_examples"] == "64"
        own = set(get_method("deep_prompt").setting_names())
        if rec.method == "deep_prompt":
            assert {"psl", "prefix_dropout"} <= set(params) and params["psl"] == "4"
        else:  # fine-tuning has no prompt settings (nor a psl drawn at 32 in the compare view)
            assert not own & set(params)


def test_tags_record_provenance_and_the_runs_table_tells_states_apart(sweep) -> None:
    import subprocess
    from pathlib import Path

    import xtuner

    state, client, _ = sweep
    head = subprocess.run(["git", "-C", str(Path(xtuner.__file__).parents[1]), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    expected = {
        "done": ("FINISHED", "done"),
        "pruned": ("KILLED", "pruned"),
        "nonfinite": ("FAILED", "failed"),
    }
    by_lr = {r.params["lr"]: r for r in state.trials.values()}
    assert (by_lr[1e-3].state, by_lr[1e-8].state, by_lr[1e30].state) == ("done", "pruned", "nonfinite")
    parent = client.get_run(state.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["xtuner.status"] == "done"
    for run in [parent] + [client.get_run(r.run_id) for r in state.trials.values()]:
        tags = run.data.tags
        assert tags["mlflow.source.git.commit"] == head and tags["xtuner.git_dirty"] in ("true", "false")
        assert tags["xtuner.version"] == xtuner.__version__ and tags["xtuner.command"]
    for rec in state.trials.values():
        run = client.get_run(rec.run_id)
        assert (run.info.status, run.data.tags["xtuner.status"]) == expected[rec.state]
    exp = client.get_experiment(parent.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow's "model training" kind


def test_end_of_sweep_hint_links_the_model_training_view_and_the_parent_run(sweep, mlflow_server) -> None:
    from xtuner.sweep.runner import mlflow_hint

    state, _, _ = sweep
    lines = mlflow_hint(state)
    assert lines[0] == f"MLflow: {mlflow_server}"
    exp = state.experiment_id
    assert lines[2] == f"  {mlflow_server}/#/experiments/{exp}/runs?workflowType=machine_learning"
    assert lines[3] == f"  {mlflow_server}/#/experiments/{exp}/runs/{state.parent_run_id}"
    assert all(len(line) <= 100 for line in lines)
    sqlite = mlflow_hint(type(state)(state.name, {}, "sqlite:///mlflow.db", "1", "0" * 32))
    assert sqlite[0] == "MLflow: mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000"
    assert all(len(line) <= 100 for line in sqlite)


def test_overwrite_deletes_the_earlier_sweeps_runs(ray_cluster, mlflow_server, tiny_model, tmp_path) -> None:
    raw = layout_spec("again", tmp_path, mlflow_server, tiny_model)
    raw.update(epochs=1, methods={"finetune": {"lr": [1.0e-3]}}, scheduler={"type": "none"})
    first = run_sweep(load_plan(raw), quiet=True)
    second = run_sweep(load_plan(raw), overwrite=True, quiet=True)
    client = MlflowClient(mlflow_server)
    old = [first.parent_run_id] + [r.run_id for r in first.trials.values()]
    for run_id in old:
        run = client.get_run(run_id)
        assert run.info.lifecycle_stage == "deleted" and "xtuner.overwritten" in run.data.tags
    active = client.search_runs([second.experiment_id], filter_string="tags.`xtuner.sweep` = 'again'")
    assert sorted(r.info.run_id for r in active) == sorted(
        [second.parent_run_id] + [r.run_id for r in second.trials.values()]
    )
    parents = [r for r in active if r.data.tags.get("xtuner.kind") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
