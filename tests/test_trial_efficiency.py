"""GPU efficiency options of a trial (xtuner/trial/efficiency.py), on the CPU: how they map onto TrainingArguments,
that CPU defaults are unchanged, and that real trials with them train (fused AdamW changes only the rounding)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from xtuner.errors import XtunerError
from xtuner.trial import TrialConfig, run_trial
from xtuner.trial.efficiency import training_args

BASE = dict(task="synth-udpos", method="finetune", lr=1e-3, epochs=2, batch_size=16, eval_batch_size=32,
            max_train_examples=96, max_eval_examples=24, max_seq_length=32, languages=["en", "s3"],
            keep_weights="none", predictions=False)  # fmt: skip


def opts(**kw) -> SimpleNamespace:
    cfg = TrialConfig(task="synth-udpos", lr=1e-3, **kw)
    return SimpleNamespace(**{k: getattr(cfg, k) for k in ("optimizer", "group_by_length", "torch_compile",
                                                           "dataloader_workers", "pin_memory")})  # fmt: skip


def test_defaults_keep_cpu_trials_as_they_were_and_speed_up_cuda_ones() -> None:
    assert training_args(opts(), cuda=False) == {
        "optim": "adamw_torch", "torch_compile": False, "dataloader_num_workers": 0,
        "dataloader_persistent_workers": False, "dataloader_pin_memory": True,
    }  # fmt: skip
    assert training_args(opts(), cuda=True) == {
        "optim": "adamw_torch_fused", "torch_compile": False, "dataloader_num_workers": 0,
        "dataloader_persistent_workers": False, "dataloader_pin_memory": True,
    }  # fmt: skip
    assert training_args(opts(dataloader_workers=2), cuda=True)["dataloader_persistent_workers"] is True
    chosen = training_args(opts(optimizer="adamw_torch", group_by_length=True, torch_compile=True,
                                dataloader_workers=0, pin_memory=False), cuda=True)  # fmt: skip
    assert chosen == {"optim": "adamw_torch", "torch_compile": True, "dataloader_num_workers": 0,
                      "dataloader_persistent_workers": False, "dataloader_pin_memory": False,
                      "train_sampling_strategy": "group_by_length"}  # fmt: skip


@pytest.mark.parametrize("bad", [{"optimizer": "sgd"}, {"dataloader_workers": -1}])
def test_bad_efficiency_settings_are_one_clear_error(bad) -> None:
    with pytest.raises(XtunerError, match="invalid trial config: " + next(iter(bad))):
        TrialConfig.from_flat({**BASE, **bad})


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> dict:
    return run_trial({**BASE, "cache_dir": str(tmp_path_factory.mktemp("cache"))})


def _scores(result: dict) -> tuple[list[float], dict[str, float]]:
    dev = [row["dev/en/f1"] for row in result["history"]]
    return dev, {lang: s["f1"] for lang, s in result["test"].items()}


def test_fused_adamw_and_length_grouped_batches_train(default_run, tmp_path) -> None:
    fused = run_trial({**BASE, "cache_dir": str(tmp_path), "optimizer": "adamw_torch_fused"})
    dev, test = _scores(fused)
    ref_dev, ref_test = _scores(default_run)
    assert dev == pytest.approx(ref_dev, abs=3.0) and test == pytest.approx(ref_test, abs=3.0)  # rounding only
    grouped = run_trial({**BASE, "cache_dir": str(tmp_path), "group_by_length": True})
    dev, test = _scores(grouped)
    assert len(dev) == 2 and all(math.isfinite(v) and 0 <= v <= 100 for v in [*dev, *test.values()])
