"""transformers' Trainer, configured for one trial, with three small additions:

- `evaluate` scores English dev through `xtuner.trial.run.score` (the same path as the final test
  evaluation), adding the dev loss (Trainer's own loop) when the selection rule is "loss";
- `training_step` raises NonFiniteLossError on a NaN/inf loss, naming the step;
- a callback hands each en-dev evaluation to the reporter (`dev/en/<metric>`, the main metric again as
  ``dev/en/main``, epoch, step), with the checkpoint saved right after it, if one was, and the training losses
  Trainer logged since the previous report (``train/losses``: [[optimizer step, loss], ...]; `LossLog`). Trainer
  logs the loss every `logging_steps(...)` optimizer steps: 50, or a fifth of an epoch when epochs are shorter.

Training settings map onto Trainer's own: `grad_accum_steps` -> gradient_accumulation_steps, `warmup_steps` /
`warmup_ratio` -> warmup_steps, `lr_schedule` linear / constant -> lr_scheduler_type. Only the per-epoch
exponential schedule (lr x `lr_gamma` after every epoch, as salesforce/MPT's ExponentialTrainer) is a LambdaLR of
our own (:func:`exponential_per_epoch`), created in `create_scheduler`.

Selection (`selection_args`): "metric" / "loss" reload the best checkpoint at the end (`load_best_model_at_end`);
"last" keeps the model as trained. Checkpoints: saved at every evaluation (`save_strategy` "eval"), or only when
the dev selection metric improves ("best", Trainer's own save_strategy="best", as XTREME's
--save_only_best_checkpoint), `save_total_limit=2` (the best and the latest are kept). Two changes make them cheap
and self-contained:

- a method that freezes the backbone (deep_prompt, soft_prompt) saves only its trainable tensors: the frozen
  backbone is rebuilt from the model path on a resume, and Trainer loads weights with ``strict=False`` (LoRA is
  a PeftModel, which saves only its adapter already);
- the folder handed to the reporter is the LATEST checkpoint; when the best one is older, its weights are copied
  into it as ``xtuner_best/``, so a trial resumed on another node (from Tune's storage, not this node's output
  folder) still ends with the best model. `restore_checkpoint` unpacks such a folder for ``Trainer.train``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from xtuner.data.batching import pad_collate
from xtuner.errors import XtunerError
from xtuner.trial.efficiency import training_args

BEST_DIR = "xtuner_best"  # the best checkpoint's weights inside a later checkpoint folder
TRAINING_ONLY = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json", "training_args.bin")


def dev_row(metrics: dict, epoch: float, step: float, src: str, main: str | None = None) -> dict[str, float]:
    """One en-dev history row (``dev/en/<metric>``, ``dev/en/main`` when `main` names the main metric, epoch,
    step) from Trainer's ``eval_*`` metrics."""
    row = {f"dev/{src}/{k.removeprefix('eval_')}": float(v) for k, v in metrics.items()
           if k.startswith("eval_") and isinstance(v, int | float) and not k.endswith(("_runtime", "per_second"))}  # fmt: skip
    if main and f"dev/{src}/{main}" in row:
        row[f"dev/{src}/main"] = row[f"dev/{src}/{main}"]
    row.update(epoch=float(epoch or 0.0), step=float(step))
    return row


class LossLog:
    """The training losses Trainer logged ([optimizer step, loss]); `take` returns those not yet reported."""

    def __init__(self) -> None:
        self.points: list[list[float]] = []
        self._sent = 0

    def add(self, step: int, loss: float) -> None:
        self.points.append([float(step), float(loss)])

    def take(self) -> list[list[float]]:
        out, self._sent = self.points[self._sent :], len(self.points)
        return out


def logging_steps(n_examples: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps between two logged training losses: 50, or a fifth of an epoch when epochs are shorter."""
    return max(1, min(50, update_steps_per_epoch(n_examples, batch_size, grad_accum) // 5))


def add_best_weights(ckpt: Path, best: Path) -> None:
    """Put the weights of checkpoint `best` (not its optimizer or trainer state) into `ckpt`/xtuner_best: hard
    links (both folders are in the trial's output folder and checkpoint files are never rewritten), copies where
    the file system has none."""
    dest = ckpt / BEST_DIR
    dest.mkdir(exist_ok=True)
    for f in best.iterdir():
        if f.is_file() and f.name not in TRAINING_ONLY and not f.name.startswith("rng_state"):
            try:
                os.link(f, dest / f.name)
            except OSError:
                shutil.copy2(f, dest / f.name)


def _copy_tree(src: Path, dest: Path, ignore=None) -> None:
    """Copy contents only (no permissions: the source may be read-only storage; Trainer must write and rotate)."""
    shutil.copytree(src, dest, ignore=ignore, dirs_exist_ok=True, copy_function=shutil.copyfile)
    for folder in [dest, *(p for p in dest.rglob("*") if p.is_dir())]:
        folder.chmod(folder.stat().st_mode | stat.S_IRWXU)


def restore_checkpoint(src_dir: str, out_dir: Path, src_lang: str,
                       main: str | None = None) -> tuple[str, list[dict[str, float]]]:  # fmt: skip
    """Unpack a reported checkpoint folder (possibly on shared storage, read-only) into `out_dir`:
    ``checkpoint-<step>`` to resume from, ``checkpoint-<best step>`` from ``xtuner_best/`` when the best is older,
    and the trainer state pointing at that best folder. Returns (folder to resume from, the dev history so far)."""
    src = Path(src_dir)
    state_file = src / "trainer_state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"checkpoint {src} has no trainer_state.json: it is not a training checkpoint")
    state = json.loads(state_file.read_text())
    step, best_step = int(state["global_step"]), state.get("best_global_step")
    dest = out_dir / f"checkpoint-{step}"
    _copy_tree(src, dest, ignore=shutil.ignore_patterns(BEST_DIR))
    best: Path | None = None
    if best_step == step:
        best = dest
    elif best_step and (src / BEST_DIR).is_dir():
        best = out_dir / f"checkpoint-{best_step}"
        _copy_tree(src / BEST_DIR, best)
    elif best_step:
        warnings.warn(f"checkpoint {src} has no {BEST_DIR}/ weights of its best step {best_step} (written by an "
                      "older xtuner?): the resumed trial ends with its latest model", stacklevel=2)  # fmt: skip
    state["best_model_checkpoint"] = str(best) if best else None
    (dest / "trainer_state.json").write_text(json.dumps(state, indent=2))
    # Trainer rotates checkpoints by modification time: the copies must be "now" (best first, then the latest),
    # not the source's times, which may come from another node's clock
    for folder in ([best] if best is not None and best != dest else []) + [dest]:
        os.utime(folder)
    history = [dev_row(h, h.get("epoch", 0.0), h.get("step", 0), src_lang, main)
               for h in state.get("log_history", []) if any(k.startswith("eval_") for k in h)]  # fmt: skip
    return str(dest), history


def exponential_per_epoch(
    optimizer: torch.optim.Optimizer, steps_per_epoch: int, gamma: float, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """lr x gamma**(epochs completed): constant within an epoch, multiplied by gamma after its last optimizer step
    (salesforce/MPT steps ExponentialLR once per epoch, training/trainer_exp.py:419); optional linear warm-up."""
    steps_per_epoch = max(int(steps_per_epoch), 1)

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps and step < warmup_steps else 1.0
        return warm * gamma ** (step // steps_per_epoch)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def update_steps_per_epoch(n_examples: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps per epoch as Trainer counts them (the last partial accumulation still steps)."""
    batches = math.ceil(n_examples / batch_size)
    return max(batches // grad_accum + int(batches % grad_accum > 0), 1)


def selection_args(selection: str, main_metric: str) -> dict[str, Any]:
    """TrainingArguments for a selection rule: which checkpoint is reloaded at the end, and by what."""
    if selection == "last":
        return {"load_best_model_at_end": False}
    key = "loss" if selection == "loss" else main_metric
    return {"load_best_model_at_end": True, "metric_for_best_model": f"eval_{key}",
            "greater_is_better": selection == "metric"}  # fmt: skip


def make_trainer(setup, data, built, reporter, out_dir: Path):
    from xtuner.trial.run import NonFiniteLossError, score

    cfg, task = setup.cfg, setup.task
    src = task.source_lang
    history: list[dict[str, float]] = []
    losses = LossLog()
    by_steps = cfg.eval_interval is not None
    interval = "steps" if by_steps else "epoch"
    args = TrainingArguments(
        output_dir=str(out_dir),
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        num_train_epochs=cfg.epochs,
        # transformers 5: an int >= 1 is a number of steps, a float < 1 a ratio of the total steps
        warmup_steps=cfg.warmup_steps if cfg.warmup_steps else float(cfg.warmup_ratio),
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="constant_with_warmup" if cfg.lr_schedule == "constant" else "linear",
        eval_strategy=interval,
        save_strategy="best" if cfg.save_strategy == "best" else interval,
        eval_steps=cfg.eval_interval,
        save_steps=cfg.eval_interval,
        save_total_limit=2,
        **selection_args(cfg.selection, task.main_metric),
        bf16=setup.bf16,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=[],
        logging_strategy="steps",
        logging_steps=logging_steps(len(data.train), cfg.batch_size, cfg.grad_accum_steps),
        disable_tqdm=True,
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
        **training_args(cfg, torch.cuda.is_available()),  # optimizer, loader workers, compile, length grouping
    )

    from peft import PeftModel

    trainable_only = built.trainable_params < built.total_params and not isinstance(built.model, PeftModel)

    class _TrialTrainer(Trainer):
        def create_scheduler(self, num_training_steps: int, optimizer=None):
            if cfg.lr_schedule != "exponential" or self.lr_scheduler is not None:
                return super().create_scheduler(num_training_steps, optimizer)
            per_epoch = update_steps_per_epoch(len(self.train_dataset), self.args.train_batch_size,
                                               self.args.gradient_accumulation_steps)  # fmt: skip
            warmup = self.args.get_warmup_steps(num_training_steps)
            self.lr_scheduler = exponential_per_epoch(optimizer or self.optimizer, per_epoch, cfg.lr_gamma, warmup)
            return self.lr_scheduler

        def _save(self, output_dir=None, state_dict=None):
            if trainable_only:  # the frozen backbone is rebuilt from the model path on a resume
                state_dict = built.trainable_state_dict()
            super()._save(output_dir, state_dict)

        def _issue_warnings_after_load(self, load_result) -> None:
            if not trainable_only:
                return super()._issue_warnings_after_load(load_result)
            missing = sorted(set(load_result.missing_keys) & set(built.trainable_names()))
            if missing or load_result.unexpected_keys:  # the frozen backbone is expected to be missing
                raise XtunerError(f"checkpoint does not fit this {cfg.method!r} model: trainable tensors "
                                  f"missing {missing[:5]}, unexpected {list(load_result.unexpected_keys)[:5]}")  # fmt: skip

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            if not torch.isfinite(loss).all():
                raise NonFiniteLossError(
                    f"training loss became {loss.item()} at step {self.state.global_step + 1} "
                    f"(task {task.name}, method {cfg.method}, lr {cfg.lr}); the trial is stopped. "
                    "Lower the learning rate or check the data."
                )
            return loss

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval") -> dict[str, float]:
            metrics: dict[str, float] = {}
            if cfg.selection == "loss":  # the dev loss through Trainer's own loop, without its logging
                loop = self.evaluation_loop(
                    self.get_eval_dataloader(data.dev_model), "dev loss", prediction_loss_only=True,
                    ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix,
                )  # fmt: skip
                metrics[f"{metric_key_prefix}_loss"] = float(loop.metrics[f"{metric_key_prefix}_loss"])
            scores = score(setup, self.model, data.dev)
            metrics.update({f"{metric_key_prefix}_{k}": v for k, v in scores.items()})
            metrics["epoch"] = float(self.state.epoch or 0.0)
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    def with_losses(row: dict[str, float]) -> dict[str, Any]:
        new = losses.take()
        return {**row, "train/losses": new} if new else dict(row)

    class _ReportCallback(TrainerCallback):
        """Each evaluation is reported once: with the checkpoint saved right after it (on_save), or without one
        when none follows (save_strategy "best" and no new best), at the next step or at the end of training."""

        pending: dict[str, float] | None = None
        last: dict[str, float] = {}

        def flush(self) -> None:
            if self.pending is not None:
                reporter.report(with_losses(self.pending), None)
                self.pending = None

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs and isinstance(logs["loss"], int | float):
                losses.add(state.global_step, logs["loss"])

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            self.flush()
            row = dev_row(metrics or {}, state.epoch, state.global_step, src, task.main_metric)
            history.append(row)
            self.pending = self.last = row

        def on_save(self, args, state, control, **kw):
            out = Path(args.output_dir)
            ckpt = out / f"checkpoint-{state.global_step}"
            best = out / f"checkpoint-{state.best_global_step}" if state.best_global_step else None
            if ckpt.is_dir() and best is not None and best != ckpt and best.is_dir():
                add_best_weights(ckpt, best)
            reporter.report(with_losses(self.pending or self.last), str(ckpt) if ckpt.is_dir() else None)
            self.pending = None

        def on_step_begin(self, args, state, control, **kw):
            self.flush()

        def on_train_end(self, args, state, control, **kw):
            self.flush()

    trainer = _TrialTrainer(
        model=built.model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.dev_model,
        data_collator=pad_collate(setup.tokenizer),
        callbacks=[_ReportCallback()],
    )
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.losses = losses  # the training-loss log (the final report carries what no dev report did)
    return trainer, history
