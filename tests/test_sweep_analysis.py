"""The sweep options of the representation analysis, end to end on the session's Ray and MLflow server: every
trial of a sentence-pair task logs its alignment metrics to its run (spec `representations`), prompt trials keep
their weights in the sweep's storage referenced from the run (`keep_weights: auto`), fine-tuning does not, and
`xtuner analyze representations SWEEP` then reads those runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from xtuner.cli import main as cli_main
from xtuner.sweep.runner import load_plan, run_sweep
from xtuner.trial.weights import META

pytestmark = pytest.mark.slow  # two real Ray trials


def test_sweep_keeps_prompt_weights_and_logs_alignment(ray_cluster, mlflow_server, tiny_model, tmp_path: Path,
                                                       capsys) -> None:  # fmt: skip
    raw = {
        "name": "repr", "model": tiny_model, "tasks": ["synth-pawsx"], "epochs": 1, "max_concurrent": 2,
        "methods": {"finetune": {"lr": 1.0e-3}, "deep_prompt": {"lr": 1.0e-2, "psl": 4}},
        "trial": {"max_train_examples": 64, "max_eval_examples": 32, "max_seq_length": 64, "batch_size": 16,
                  "languages": ["en", "s3"]},
        "representations": 30,
        "tracking": {"uri": mlflow_server, "experiment": "test-repr"}, "storage": str(tmp_path / "results"),
    }  # fmt: skip
    state = run_sweep(load_plan(raw), quiet=True)
    assert state.finished and {r.state for r in state.trials.values()} == {"done"}
    client = MlflowClient(mlflow_server)
    by_method = {r.method: r for r in state.trials.values()}
    for method, rec in by_method.items():
        run = client.get_run(rec.run_id)
        m = run.data.metrics
        assert m["analysis/representations/rows"] == 30.0
        assert {"analysis/representations/s3/pos", "analysis/representations/avg/acc1_en_to_x"} <= set(m)
        assert run.data.params["keep_weights"] == "auto"
        kept = run.data.tags.get("xtuner.weights")
        if method == "deep_prompt":
            assert kept == str(tmp_path / "results" / "repr" / "weights" / rec.trial_id)
            assert (Path(kept) / META).is_file()
        else:
            assert kept is None and not (tmp_path / "results" / "repr" / "weights" / rec.trial_id).exists()
    capsys.readouterr()
    rc = cli_main(["analyze", "representations", "repr", "--tracking-uri", mlflow_server, "--rows", "30",
                   "--languages", "s3", "--out", str(tmp_path / "out")])  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0 and "| deep_prompt | 1 |" in out.out and "finetune trial" in out.err  # skipped: no weights
    dp = client.get_run(by_method["deep_prompt"].run_id).data.metrics
    assert {"analysis/representations/s3/rel_diff"} <= set(dp)
    assert (tmp_path / "out" / "projection_s3.png").is_file()


def test_spec_keys_become_trial_settings(tiny_model, tmp_path: Path) -> None:
    from xtuner.errors import XtunerError

    base = {"name": "s", "model": tiny_model, "tasks": ["synth-xnli"], "methods": {"finetune": {"lr": 1e-3}},
            "storage": str(tmp_path)}  # fmt: skip
    group = next(iter(load_plan(base).groups.values()))
    assert group.fixed["keep_weights"] == "auto" and "representation_rows" not in group.fixed
    group = next(iter(load_plan({**base, "keep_weights": "all", "representations": 100}).groups.values()))
    assert group.fixed["keep_weights"] == "all" and group.fixed["representation_rows"] == 100
    with pytest.raises(XtunerError, match="trial.keep_weights: set it with the top-level key keep_weights"):
        load_plan({**base, "trial": {"keep_weights": "all"}})
    with pytest.raises(XtunerError, match="representations"):
        load_plan({**base, "representations": -1})
