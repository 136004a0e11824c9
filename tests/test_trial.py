"""run_trial end to end on real (tiny) models: every head type, the tokenisation cache, NaN handling, bad input."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from xtuner.errors import XtunerError
from xtuner.models import resolve_model
from xtuner.trial import NonFiniteLossError, TrialConfig, run_trial, scratch

FIXTURES = Path(__file__).parent / "fixtures" / "xtreme" / "download"
SMALL = dict(epochs=1, batch_size=16, eval_batch_size=32, max_train_examples=48, max_eval_examples=12)


class Recorder:
    def __init__(self) -> None:
        self.reports: list[tuple[dict, str | None]] = []

    def report(self, metrics, checkpoint_dir=None):
        self.reports.append((dict(metrics), checkpoint_dir))

    def resume_from(self):
        return None


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tok-cache"))


def test_finetune_synth_xnli_returns_metrics_for_every_language(cache_dir):
    rec = Recorder()
    result = run_trial(dict(task="synth-xnli", method="finetune", lr=3e-4, cache_dir=cache_dir, **SMALL), rec)
    langs = ["en", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert sorted(result["test"]) == langs
    for lang in langs:
        assert 0.0 <= result["test"][lang]["accuracy"] <= 100.0
    mean = sum(result["test"][lang]["accuracy"] for lang in langs) / 7
    assert result["avg"]["accuracy"] == pytest.approx(mean)
    others = sum(result["test"][lang]["accuracy"] for lang in langs[1:]) / 6
    assert result["gap"]["accuracy"] == pytest.approx(result["test"]["en"]["accuracy"] - others)
    assert result["trainable_params"] == result["total_params"] > 1_000_000
    assert result["train_seconds"] > 0 and result["eval_seconds"] > 0
    # one report per epoch with en-dev metrics and a checkpoint, then the final flat metrics
    dev_reports = [(m, c) for m, c in rec.reports if "done" not in m]
    assert len(dev_reports) == 1 and "dev/en/accuracy" in dev_reports[0][0] and dev_reports[0][1]
    final = rec.reports[-1][0]
    assert final["done"] == 1.0 and final["test/s3/accuracy"] == result["test"]["s3"]["accuracy"]
    assert "test/avg/accuracy" in final and "test/gap/accuracy" in final


def test_second_trial_hits_the_tokenisation_cache(cache_dir):
    from xtuner.trial.run import prepare_data, setup_trial

    cfg = dict(
        task="synth-pawsx", method="finetune", lr=1e-4, cache_dir=cache_dir, languages=["en", "s2"], **SMALL
    )
    first = prepare_data(setup_trial(cfg))
    second = prepare_data(setup_trial(cfg))
    assert first.cache_misses == 4 and first.cache_hits == 0  # train, dev, 2 test languages
    assert second.cache_hits == 4 and second.cache_misses == 0
    assert second.train["input_ids"] == first.train["input_ids"]


@pytest.mark.parametrize(
    "task,method,extra",
    [
        ("synth-udpos", "deep_prompt", {"psl": 4}),
        ("synth-panx", "soft_prompt", {"psl": 4}),
        ("synth-xquad", "deep_prompt", {"psl": 4, "max_seq_length": 64, "doc_stride": 32}),
        ("synth-xnli", "lora", {"r": 4}),
    ],
)
def test_each_head_type_under_prompt_and_lora_methods(cache_dir, task, method, extra):
    rec = Recorder()
    cfg = dict(
        task=task, method=method, lr=1e-2, cache_dir=cache_dir, languages=["en", "s4"], eval_interval=2
    )
    result = run_trial({**cfg, **SMALL, **extra}, rec)
    main = result["main_metric"]
    assert set(result["test"]) == {"en", "s4"}
    assert all(math.isfinite(result["test"][lang][main]) for lang in result["test"])
    assert result["trainable_params"] < result["total_params"] / 2
    steps = [m["step"] for m, _ in rec.reports if "done" not in m]
    assert steps == sorted(steps) and len(steps) >= 2  # eval_interval=2 steps: several dev reports


def test_selection_by_lowest_dev_loss(cache_dir):
    rec = Recorder()
    cfg = dict(
        task="synth-xnli", method="finetune", lr=1e-4, cache_dir=cache_dir, languages=["en"], selection="loss"
    )
    result = run_trial({**cfg, **SMALL, "epochs": 2}, rec)
    dev = [m for m, _ in rec.reports if "done" not in m]
    losses = [m["dev/en/loss"] for m in dev]
    assert len(losses) == 2 and result["dev"]["dev/en/loss"] == min(losses)
    assert all("dev/en/accuracy" in m for m in dev)  # the main metric is reported too (ASHA may use it)


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory):
    """A copy of the tiny encoder whose weights hold a NaN (a corrupt checkpoint): the first loss is NaN."""
    src = Path(resolve_model("builtin:tiny-xlmr"))
    out = tmp_path_factory.mktemp("nan-model")
    weights = load_file(src / "model.safetensors")
    key = next(k for k in weights if k.endswith("embeddings.LayerNorm.weight"))
    weights[key] = torch.full_like(weights[key], float("nan"))
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (out / name).write_bytes((src / name).read_bytes())
    return str(out)


def test_nan_loss_stops_the_trial_with_a_clear_message(cache_dir, nan_model):
    rec = Recorder()
    with pytest.raises(NonFiniteLossError, match=r"training loss became nan at step 1"):
        run_trial(
            dict(
                task="synth-xnli", model=nan_model, method="finetune", lr=1e-4, cache_dir=cache_dir, **SMALL
            ),
            rec,
        )
    assert not any("done" in m for m, _ in rec.reports)  # no garbage final metrics


@pytest.mark.parametrize(
    "cfg,match",
    [
        (dict(method="finetune", psl=16), "setting 'psl' is not valid for method 'finetune'"),
        (dict(method="lora", psl=16), "setting 'psl' is not valid for method 'lora'"),
        (dict(method="deep_prompt", psl=0), "psl"),
        (dict(method="prefix"), "unknown method 'prefix'"),
        (dict(lr=0), "lr"),
        (dict(lr=-1e-3), "lr"),
        (dict(model="./no/such/model"), "does not exist"),
        (dict(task="synth-xnlii"), "did you mean 'synth-xnli'"),
        (dict(languages=["en", "zz"]), "unknown language 'zz'"),
    ],
)
def test_bad_settings_fail_before_training(cfg, match, cache_dir):
    base = dict(task="synth-xnli", method="finetune", lr=1e-4, cache_dir=cache_dir)
    rec = Recorder()
    with pytest.raises(XtunerError, match=match):
        run_trial({**base, **cfg}, rec)
    assert rec.reports == []


def test_trial_config_is_flat_and_splits_method_settings():
    cfg = TrialConfig.from_flat({"task": "synth-xnli", "lr": 1e-3, "method": "deep_prompt", "psl": 16})
    assert cfg.method_settings == {"psl": 16}
    with pytest.raises(XtunerError, match="epochs"):
        TrialConfig.from_flat({"task": "synth-xnli", "lr": 1e-3, "epochs": "many"})


REAL = [
    ("xnli", ["en", "de"]),
    ("pawsx", ["en", "de"]),
    ("udpos", ["en", "de"]),
    ("panx", ["en", "de"]),
    ("xquad", ["en", "de"]),
    ("mlqa", ["en", "zh"]),
    ("tydiqa", ["en", "ar"]),
]


@pytest.fixture(scope="module")
def real_task_model(tmp_path_factory) -> str:
    """A tiny random XLM-R built from a config with the shipped tokenizer, shared by the real-task trials."""
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    model_dir = tmp_path_factory.mktemp("real-task-model") / "tiny"
    tok = AutoTokenizer.from_pretrained(resolve_model("builtin:tiny-xlmr"))
    tok.save_pretrained(model_dir)
    cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)  # fmt: skip
    XLMRobertaForMaskedLM(cfg).save_pretrained(model_dir)
    return str(model_dir)


@pytest.mark.parametrize("task,langs", REAL)
def test_short_trial_on_each_real_task_fixture(task, langs, cache_dir, real_task_model):
    """The real tasks through the XTREME download layout, with a tiny model built from a config."""
    model_dir = real_task_model
    result = run_trial(
        dict(
            task=task,
            model=str(model_dir),
            method="finetune",
            lr=1e-3,
            data_dir=str(FIXTURES),
            languages=langs,
            cache_dir=cache_dir,
            epochs=1,
            batch_size=4,
            max_seq_length=128,
            doc_stride=32,
        )  # fmt: skip
    )
    assert set(result["test"]) == set(langs)
    main = result["main_metric"]
    assert all(0.0 <= result["test"][lang][main] <= 100.0 for lang in langs)


class Keeper(Recorder):
    """A reporter that keeps every reported checkpoint (copied away, as Tune copies it to its storage: the trial's
    own output folder rotates them) and resumes from a given one."""

    def __init__(self, root: Path, resume: str | None = None) -> None:
        super().__init__()
        self.root, self.resume = root, resume

    def report(self, metrics, checkpoint_dir=None):
        if checkpoint_dir:
            dest = self.root / f"ckpt{len(self.reports)}"
            shutil.copytree(checkpoint_dir, dest)
            checkpoint_dir = str(dest)
        super().report(metrics, checkpoint_dir)

    def resume_from(self):
        return self.resume

    def dev_reports(self) -> int:
        return sum(1 for m, _ in self.reports if "done" not in m)


@pytest.mark.parametrize(("method", "lr"), [("deep_prompt", 1e-1), ("finetune", 2e-3)])
def test_resume_from_a_reported_checkpoint(method, lr, cache_dir, tmp_path):
    """A trial resumed from a reported checkpoint (in a new output folder, as on another node) trains only what
    was left, keeps the dev history from before, and ends with the same best model and test scores as the
    uninterrupted trial. With these learning rates en-dev peaks at epoch 2 of 3, so the last checkpoint carries the
    best weights (``xtuner_best/``); without them the resumed trial would end on the epoch-3 model."""
    cfg = dict(task="synth-xnli", method=method, lr=lr, epochs=3, batch_size=16, eval_batch_size=32,
               max_train_examples=96, max_eval_examples=24, languages=["en", "s3"], cache_dir=cache_dir,
               **({"psl": 4} if method == "deep_prompt" else {}))  # fmt: skip
    first = Keeper(tmp_path / "first")
    full = run_trial(cfg, first)
    ckpts = [d for _, d in first.reports if d]
    assert len(ckpts) == 3 and full["dev"]["epoch"] == 2.0  # the best is older than the last checkpoint
    assert (Path(ckpts[2]) / "xtuner_best").is_dir() and not (Path(ckpts[1]) / "xtuner_best").exists()
    if method == "deep_prompt":  # only the trainable tensors are saved: the frozen backbone is rebuilt
        saved = set(load_file(Path(ckpts[2]) / "model.safetensors"))
        assert saved and not any(k.startswith("backbone.") for k in saved)

    for i, trained in ((1, 1), (2, 0)):  # after epoch 2: one epoch left; after epoch 3: only the test evaluation
        again = Keeper(tmp_path / f"resume{i}", resume=ckpts[i])
        result = run_trial(cfg, again)
        assert again.dev_reports() == trained
        assert result["history"] == full["history"]  # epochs 1..3, the ones before the resume included
        assert result["dev"] == full["dev"] and result["test"] == full["test"]

    stripped = tmp_path / "no-best"  # control: the last checkpoint without its best weights
    shutil.copytree(ckpts[2], stripped, ignore=shutil.ignore_patterns("xtuner_best"))
    with pytest.warns(UserWarning, match="no xtuner_best/ weights of its best step"):
        result = run_trial(cfg, Keeper(tmp_path / "control", resume=str(stripped)))
    assert result["test"] != full["test"]


def test_resume_from_a_folder_that_is_not_a_checkpoint(cache_dir, tmp_path):
    cfg = dict(task="synth-xnli", lr=1e-4, cache_dir=cache_dir, languages=["en"], **SMALL)
    with pytest.raises(XtunerError, match=r"cannot resume the trial from checkpoint .*trainer_state\.json"):
        run_trial(cfg, Keeper(tmp_path, resume=str(tmp_path)))


def test_temp_output_folders_of_dead_trial_processes_are_removed(cache_dir, tmp_path, monkeypatch):
    """A killed worker leaves its temp output folder (checkpoints) behind; the next trial on the node removes it,
    but only folders of its own host and PID namespace (pids of other containers or nodes say nothing here)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited
    me = scratch.owner_tag()
    stale = tmp_path / f"xtuner-trial-{dead_pid}-{me}-abc123"
    (stale / "checkpoint-4").mkdir(parents=True)
    download = tmp_path / f"xtuner-trial-{dead_pid}-{me}-resume-x1"  # a dead worker's checkpoint download
    download.mkdir()
    live = tmp_path / f"xtuner-trial-{os.getppid()}-{me}-def456"  # a running process (pytest's parent)
    foreign = tmp_path / f"xtuner-trial-{dead_pid}-0123abcd-ghi789"  # another host or PID namespace
    odd = tmp_path / f"xtuner-trial-99999999999999999999-{me}-x"  # not a pid at all: kept, and no crash
    for folder in (live, foreign, odd):
        folder.mkdir()
    monkeypatch.setenv("XTUNER_TMP", str(tmp_path))
    run_trial(dict(task="synth-xnli", lr=1e-4, cache_dir=cache_dir, languages=["en"], **SMALL))
    assert not stale.exists() and not download.exists()
    # the trial removed its own folder too
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, foreign.name, odd.name])


def test_resume_copies_of_a_read_only_checkpoint_are_writable_and_current(tmp_path):
    """Checkpoints restored from read-only storage (or written under another node's clock) must be writable and
    newer than anything Trainer saves after them: it rotates its checkpoints by modification time."""
    from xtuner.trial.trainer import restore_checkpoint

    src = tmp_path / "ckpt"
    (src / "xtuner_best").mkdir(parents=True)
    state = {"global_step": 8, "best_global_step": 4, "log_history": [
        {"loss": 1.0, "epoch": 1.0, "step": 4}, {"eval_accuracy": 50.0, "eval_runtime": 0.1, "epoch": 1.0, "step": 4},
        {"eval_accuracy": 40.0, "epoch": 2.0, "step": 8}]}  # fmt: skip
    (src / "trainer_state.json").write_text(json.dumps(state))
    (src / "model.safetensors").write_bytes(b"latest")
    (src / "xtuner_best" / "model.safetensors").write_bytes(b"best")
    future = time.time() + 3600
    for path in [*src.rglob("*"), src]:
        os.utime(path, (future, future))
        path.chmod(0o555 if path.is_dir() else 0o444)
    out = tmp_path / "out"
    out.mkdir()
    try:
        resume, history = restore_checkpoint(str(src), out, "en")
    finally:
        for path in [src, *src.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    latest, best = out / "checkpoint-8", out / "checkpoint-4"
    assert resume == str(latest) and (best / "model.safetensors").read_bytes() == b"best"
    assert json.loads((latest / "trainer_state.json").read_text())["best_model_checkpoint"] == str(best)
    assert history == [{"dev/en/accuracy": 50.0, "epoch": 1.0, "step": 4.0},
                       {"dev/en/accuracy": 40.0, "epoch": 2.0, "step": 8.0}]  # fmt: skip
    now = time.time()
    assert best.stat().st_mtime <= latest.stat().st_mtime <= now + 1  # not the source's future times
    for folder in (latest, best):
        probe = folder / "probe"
        probe.write_text("x")  # writable (as Trainer's rotation needs), also for root's sake: mode bits
        assert folder.stat().st_mode & 0o700 == 0o700
