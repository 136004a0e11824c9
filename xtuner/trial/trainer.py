"""transformers' Trainer, configured for one trial, with three small additions:

- `evaluate` scores English dev through `xtuner.trial.run.score` (the same path as the final test
  evaluation), adding the dev loss (Trainer's own loop) when the selection rule is "loss";
- `training_step` raises NonFiniteLossError on a NaN/inf loss, naming the step;
- a callback hands each saved checkpoint and its dev metrics to the reporter (`dev/en/<metric>`, epoch, step).

Checkpoints: saved at every evaluation, `save_total_limit=2` (the best and the latest are kept), the best is
reloaded at the end (`load_best_model_at_end`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from xtuner.data.batching import pad_collate


def make_trainer(setup, data, built, reporter, out_dir: Path):
    from xtuner.trial.run import NonFiniteLossError, score

    cfg, task = setup.cfg, setup.task
    src = task.source_lang
    history: list[dict[str, float]] = []
    by_steps = cfg.eval_interval is not None
    metric_key = "loss" if cfg.selection == "loss" else task.main_metric
    args = TrainingArguments(
        output_dir=str(out_dir),
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        num_train_epochs=cfg.epochs,
        warmup_steps=float(cfg.warmup_ratio),  # transformers 5: a float < 1 is a ratio of the total steps
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        optim="adamw_torch",
        eval_strategy="steps" if by_steps else "epoch",
        save_strategy="steps" if by_steps else "epoch",
        eval_steps=cfg.eval_interval,
        save_steps=cfg.eval_interval,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=f"eval_{metric_key}",
        greater_is_better=cfg.selection == "metric",
        bf16=setup.bf16,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=[],
        logging_strategy="steps",
        logging_steps=50,
        disable_tqdm=True,
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )

    class _TrialTrainer(Trainer):
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

    class _ReportCallback(TrainerCallback):
        last: dict[str, float] = {}

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            row = {f"dev/{src}/{k.removeprefix('eval_')}": float(v) for k, v in (metrics or {}).items()
                   if k.startswith("eval_") and isinstance(v, int | float) and not k.endswith(("_runtime", "per_second"))}  # fmt: skip
            row.update(epoch=float(state.epoch or 0.0), step=float(state.global_step))
            history.append(row)
            self.last = row

        def on_save(self, args, state, control, **kw):
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            reporter.report(dict(self.last), str(ckpt) if ckpt.is_dir() else None)

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
    return trainer, history
