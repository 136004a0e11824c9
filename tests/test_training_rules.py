"""The training building blocks the protocols are made of, each on the real component: the learning-rate schedules
per optimizer step (transformers' Trainer, with gradient accumulation), the selection rules (which checkpoint a
real Trainer ends with, on a made-up dev history), checkpoints only at a new best, the English dev split switch
(MNLI matched for XNLI: GLUE's tsv, the hub layout, local parquet), and backbone dropout in the frozen layers."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Value
from safetensors.torch import load_file
from torch import nn
from transformers import Trainer, TrainerCallback

from xtuner.errors import XtunerError
from xtuner.methods import build_model
from xtuner.models import resolve_model
from xtuner.tasks import LoadContext, get_task
from xtuner.tasks.base import HeadType
from xtuner.trial import run as trial_run
from xtuner.trial.run import _best, build, prepare_data, setup_trial
from xtuner.trial.trainer import exponential_per_epoch, make_trainer, selection_args, update_steps_per_epoch

FIXTURES = Path(__file__).parent / "fixtures" / "xtreme" / "download"
TINY = dict(task="synth-xnli", method="finetune", lr=1e-3, languages=["en"], epochs=3, batch_size=16,
            eval_batch_size=32, max_train_examples=48, max_eval_examples=16, max_seq_length=32)  # fmt: skip


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tok-cache"))


class Keeper:
    """A reporter that keeps a copy of every reported checkpoint (Trainer rotates its own)."""

    def __init__(self, root: Path) -> None:
        self.root, self.reports = root, []

    def report(self, metrics, checkpoint_dir=None):
        if checkpoint_dir:
            dest = self.root / f"ckpt-{int(metrics['step'])}"
            shutil.copytree(checkpoint_dir, dest)
            checkpoint_dir = str(dest)
        self.reports.append((dict(metrics), checkpoint_dir))

    def resume_from(self):
        return None


def _trainer(cache_dir: str, tmp_path: Path, **over):
    setup = setup_trial({**TINY, "cache_dir": cache_dir, **over})
    data = prepare_data(setup)
    built = build(setup)
    keeper = Keeper(tmp_path / "kept")
    trainer, history = make_trainer(setup, data, built, keeper, tmp_path / "out")
    return trainer, history, keeper


class LrRecorder(TrainerCallback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_step_begin(self, args, state, control, optimizer=None, **kw):
        self.lrs.append(optimizer.param_groups[0]["lr"])  # the lr of the optimizer step about to run


# ------------------------------------------------------------------------------------------------ lr schedules
def test_exponential_schedule_is_constant_within_an_epoch_and_decays_after_it() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = exponential_per_epoch(opt, steps_per_epoch=3, gamma=0.5, warmup_steps=2)
    lrs = []
    for _ in range(9):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [0.5, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]  # warm-up over 2 steps, then x0.5 per epoch
    assert update_steps_per_epoch(48, 8, 2) == 3 and update_steps_per_epoch(50, 8, 2) == 4  # 7 batches -> 4


@pytest.mark.parametrize(
    "schedule,expected",
    [
        ("exponential", [1e-3] * 3 + [5e-4] * 3 + [2.5e-4] * 3),  # lr x gamma after each epoch (salesforce/MPT)
        ("constant", [1e-3] * 9),
        ("linear", [1e-3 * (9 - i) / 9 for i in range(9)]),  # transformers' linear decay to 0
    ],
)
def test_the_lr_of_every_optimizer_step_in_a_real_trainer(schedule, expected, cache_dir, tmp_path) -> None:
    """48 examples, batches of 8, 2 batches per update: 3 updates per epoch, 3 epochs."""
    trainer, _, _ = _trainer(cache_dir, tmp_path, lr_schedule=schedule, lr_gamma=0.5, batch_size=8,
                             grad_accum_steps=2)  # fmt: skip
    rec = LrRecorder()
    trainer.add_callback(rec)
    trainer.train()
    assert trainer.args.gradient_accumulation_steps == 2 and trainer.state.global_step == 9
    assert rec.lrs == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------ selection
HISTORY = [
    {"dev/en/accuracy": 80.0, "dev/en/loss": 0.9, "epoch": 1.0, "step": 3.0},
    {"dev/en/accuracy": 50.0, "dev/en/loss": 0.4, "epoch": 2.0, "step": 6.0},
    {"dev/en/accuracy": 80.0, "dev/en/loss": float("nan"), "epoch": 3.0, "step": 9.0},
    {"dev/en/accuracy": 60.0, "dev/en/loss": 0.7, "epoch": 4.0, "step": 12.0},
]


def test_each_selection_rule_on_a_made_up_history() -> None:
    assert _best(HISTORY, "accuracy", "metric")["epoch"] == 1.0  # best accuracy; a tie keeps the earlier
    assert _best(HISTORY, "accuracy", "loss")["epoch"] == 2.0  # lowest loss; NaN is never chosen
    assert _best(HISTORY, "accuracy", "last")["epoch"] == 4.0
    assert _best([], "accuracy", "last") == {} and _best(HISTORY[2:3], "accuracy", "loss") == {}
    assert selection_args("last", "f1") == {"load_best_model_at_end": False}
    assert selection_args("metric", "f1") == {"load_best_model_at_end": True, "metric_for_best_model": "eval_f1",
                                              "greater_is_better": True}  # fmt: skip
    assert selection_args("loss", "f1")["metric_for_best_model"] == "eval_loss"


@pytest.mark.parametrize(
    "selection,save,chosen,saved",
    [
        ("metric", "eval", 1, [1, 2, 3]),  # accuracy 80 / 60 / 50: the first epoch's model
        ("loss", "eval", 2, [1, 2, 3]),  # loss 0.9 / 0.4 / 0.7: the second (not the lowest accuracy, the third)
        ("last", "eval", 3, [1, 2, 3]),
        ("metric", "best", 1, [1]),  # a checkpoint only at a new best (XTREME's --save_only_best_checkpoint)
    ],
)
def test_a_real_trainer_ends_with_the_checkpoint_its_rule_picks(
    selection, save, chosen, saved, cache_dir, tmp_path, monkeypatch
) -> None:
    """The en-dev scores are made up (the dev metrics and, for "loss", the dev loss of Trainer's own loop); the
    training, checkpointing and the reload at the end are the real Trainer's."""
    accuracy, loss = iter([80.0, 60.0, 50.0]), iter([0.9, 0.4, 0.7])
    monkeypatch.setattr(trial_run, "score", lambda setup, model, split: {"accuracy": next(accuracy)})
    monkeypatch.setattr(Trainer, "evaluation_loop",
                        lambda self, *a, **k: SimpleNamespace(metrics={"eval_loss": next(loss)}))  # fmt: skip
    trainer, history, keeper = _trainer(cache_dir, tmp_path, selection=selection, save_strategy=save)
    trainer.train()
    dev = [(m["epoch"], ckpt is not None) for m, ckpt in keeper.reports]
    assert dev == [(float(e), e in saved) for e in (1, 2, 3)]  # every evaluation reported once
    assert _best(history, "accuracy", selection)["epoch"] == chosen  # what the summary reports as the dev score
    weights = {int(m["epoch"]): load_file(Path(c) / "model.safetensors") for m, c in keeper.reports if c}
    if chosen not in weights:  # "last" under save "best" does not occur (rejected by TrialConfig)
        raise AssertionError(f"epoch {chosen} has no checkpoint")
    final = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
    for epoch, tensors in weights.items():
        same = all(torch.equal(final[k], v) for k, v in tensors.items() if k in final)
        assert same == (epoch == chosen), (epoch, chosen)


# ------------------------------------------------------------------------------------------------ dev split
GLUE_MNLI = Features({"premise": Value("string"), "hypothesis": Value("string"),
                      "label": ClassLabel(names=["entailment", "neutral", "contradiction"]), "idx": Value("int32")})  # fmt: skip


def test_xnli_selects_on_mnli_matched_from_glue_files_the_hub_layout_or_local_parquet(tmp_path) -> None:
    xnli = get_task("xnli")
    assert xnli.dev_splits == ("validation", "mnli_matched")
    # GLUE's MNLI/dev_matched.tsv beside an XTREME folder: header-named columns, bare quotes, "-" rows skipped
    glue = xnli.load("mnli_matched", "en", LoadContext(data_dir=FIXTURES))
    assert len(glue) == 4 and glue[1]["premise"].endswith('database of "Government Executive" articles.')
    assert [glue.features["label"].int2str(v) for v in glue["label"]] == ["neutral", "contradiction", "entailment",
                                                                         "contradiction"]  # fmt: skip
    assert len(xnli.load("validation", "en", LoadContext(data_dir=FIXTURES))) == 3  # XNLI en dev, unchanged
    # the hub's nyu-mll/glue mnli config (validation_matched), through a local mirror of its parquet layout
    rows = {"premise": ["a b", "c d"], "hypothesis": ["a", "e"], "label": [0, 2], "idx": [0, 1]}
    mirror = tmp_path / "mirror" / "nyu-mll" / "glue" / "mnli"
    mirror.mkdir(parents=True)
    Dataset.from_dict(rows, features=GLUE_MNLI).to_parquet(str(mirror / "validation_matched-00000-of-00001.parquet"))
    hub = xnli.load("mnli_matched", "en", LoadContext(options={"hub_mirror": str(tmp_path / "mirror")}))
    assert hub["premise"] == ["a b", "c d"] and hub["label"] == [0, 2] and hub.column_names == glue.column_names
    # local parquet in any hub schema: <data_dir>/xnli/mnli_matched-en.parquet
    local = tmp_path / "local" / "xnli"
    local.mkdir(parents=True)
    Dataset.from_dict(rows, features=GLUE_MNLI).to_parquet(str(local / "mnli_matched-en.parquet"))
    assert xnli.load("mnli_matched", "en", LoadContext(data_dir=tmp_path / "local"))["hypothesis"] == ["a", "e"]
    with pytest.raises(XtunerError, match="MNLI is English only"):
        xnli.load("mnli_matched", "de", LoadContext(data_dir=FIXTURES))
    bare = tmp_path / "xtreme"
    shutil.copytree(FIXTURES / "xnli", bare / "xnli")
    with pytest.raises(XtunerError, match="put GLUE's MNLI/dev_matched.tsv there"):
        xnli.load("mnli_matched", "en", LoadContext(data_dir=bare))


def test_the_dev_split_setting_switches_the_data_a_trial_selects_on(cache_dir) -> None:
    base = dict(task="xnli", method="finetune", lr=1e-3, languages=["en"], data_dir=str(FIXTURES),
                cache_dir=cache_dir, max_seq_length=64)  # fmt: skip
    mnli = prepare_data(setup_trial({**base, "dev_split": "mnli_matched"}))
    xnli = prepare_data(setup_trial(base))
    assert len(mnli.dev.raw) == len(mnli.dev.features) == 4 and len(xnli.dev.raw) == 3
    assert mnli.dev.raw[0]["premise"] == "The new rights are nice enough" != xnli.dev.raw[0]["premise"]
    assert len(mnli.dev_model) == 4  # the dev loss reads it too
    with pytest.raises(XtunerError, match="unknown dev split 'mnli_matched' for task 'pawsx'"):
        setup_trial({**base, "task": "pawsx", "dev_split": "mnli_matched"})


# ------------------------------------------------------------------------------------------------ dropout
def _zeroed_share(module: nn.Module, run) -> float:
    """Share of a dropout module's non-zero inputs it set to zero during `run()`."""
    seen = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(((i[0] != 0) & (o == 0)).float().mean()))
    try:
        run()
    finally:
        handle.remove()
    return float(torch.stack(seen).mean())


@pytest.mark.parametrize("method", ["deep_prompt", "soft_prompt"])
def test_backbone_dropout_reaches_the_frozen_layers_and_acts_only_in_training(method) -> None:
    path = resolve_model("builtin:tiny-xlmr")
    built = build_model(path, HeadType.SEQUENCE_CLASSIFICATION, 3, method,
                        {"psl": 4, "prefix_dropout": 0.0, "backbone_dropout": 0.3})  # fmt: skip
    model, backbone = built.model, built.model.encoder.backbone
    hidden = [m for n, m in backbone.named_modules() if isinstance(m, nn.Dropout) and not n.endswith("self.dropout")]
    assert len(hidden) == 1 + 2 * backbone.config.num_hidden_layers and all(m.p == 0.3 for m in hidden)
    assert model.dropout.p == 0.3  # the head's dropout follows it, as the reference's one --hidden_dropout_prob
    assert not any(p.requires_grad for p in backbone.parameters())  # still frozen
    default = build_model(path, HeadType.SEQUENCE_CLASSIFICATION, 3, method, {"psl": 4})
    assert default.model.encoder.backbone.embeddings.dropout.p == backbone.config.attention_probs_dropout_prob == 0.1

    ids = torch.randint(5, 1000, (4, 24))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    last = backbone.encoder.layer[-1].output.dropout
    model.train()
    assert 0.2 < _zeroed_share(last, lambda: model(**batch)) < 0.4
    model.eval()
    with torch.no_grad():
        assert _zeroed_share(last, lambda: model(**batch)) == 0.0
        assert torch.equal(model(**batch).logits, model(**batch).logits)
