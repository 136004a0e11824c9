"""``xtreme``: XTREME's fine-tuning recipe for XLM-R large (Hu et al. 2020; google-research/xtreme ``scripts/``).

Full fine-tuning of every task the paper reports beside its own (XNLI, PAWS-X, UD-POS, PAN-X, and SQuAD v1.1 for
XQuAD and MLQA, TyDiQA-GoldP's English train for TyDiQA), from the ``scripts/train_*.sh`` branch for
``xlm-roberta-large`` and the ``third_party/run_*.py`` trainers they call. Classification and tagging evaluate
English dev every ``--save_steps`` optimizer steps and keep only the best checkpoint (``--save_only_best_checkpoint``);
QA trains to the end and predicts with the final model. XTREME's batches of 2 (4 for QA) with gradient
accumulation are run here as one batch of 32 (the same update; see docs/fidelity.md).

Version 1: first version.
"""

from __future__ import annotations

from xtuner.protocols import Protocol, Setting, register_protocol

SCRIPTS = "091824888a60162ad9ea10d7fe67aa561615e4ca"
COMMITS = {
    "scripts/train_xnli.sh": SCRIPTS,
    "scripts/train_pawsx.sh": "1e21ba0744b2bf207e4efa9bd0238b80ee18afac",
    "scripts/train_udpos.sh": SCRIPTS,
    "scripts/train_panx.sh": SCRIPTS,
    "scripts/train_qa.sh": SCRIPTS,
    "third_party/run_classify.py": "9e562ff797b8a5cf21539bc6e913bbabc4c9859b",
    "third_party/run_tag.py": "8fe48fed7bb6cb67033822de5c91039e5f57fa4a",
    "third_party/run_squad.py": SCRIPTS,
}

ARGPARSE = "not set by the script: the trainer's argparse default"
ACCUM = ("BATCH_SIZE=2 x GRAD_ACC=16 for xlm-roberta-large: 32 examples per update, run here as one batch of 32 "
         "(same update; the 2 x 16 split fit 2020 GPU memory)")  # fmt: skip
BEST = ("--save_only_best_checkpoint: every --save_steps updates the model is scored on English dev and kept only "
        "when it beats the best so far")  # fmt: skip


def _classify(script: str, *, lr: tuple[float, int], epochs: int, maxl: int, batch: int, every: tuple[int, int],
              best: int) -> dict[str, Setting]:  # fmt: skip
    """XNLI / PAWS-X through run_classify.py: (value, line) pairs of `script`."""
    return {
        "lr": Setting(lr[0], f"{script}:{lr[1]}"),
        "batch_size": Setting(32, f"{script}:{batch}", ACCUM),
        "grad_accum_steps": Setting(1, f"{script}:{batch + 1}", ACCUM),
        "epochs": Setting(5, f"{script}:{epochs}"),
        "max_seq_length": Setting(128, f"{script}:{maxl}"),
        "lr_schedule": Setting("linear", "third_party/run_classify.py:121", "get_linear_schedule_with_warmup"),
        "warmup_steps": Setting(0, "", ARGPARSE),
        "weight_decay": Setting(0.0, "third_party/run_classify.py:112",
                                f"{ARGPARSE} (0.0); bias and LayerNorm never decay, as transformers' Trainer"),
        "selection": Setting("metric", "third_party/run_classify.py:258", "best en-dev accuracy"),
        "save_strategy": Setting("best", f"{script}:{best}", BEST),
        "eval_interval": Setting(every[0], f"{script}:{every[1]}", "--save_steps: en-dev evaluation interval"),
        "dev_split": Setting("validation", "third_party/run_classify.py:256", "split='dev' of the train language"),
    }


def _tag(script: str, *, every: tuple[int, int], best: int) -> dict[str, Setting]:
    """UD-POS / PAN-X through run_tag.py (the two scripts share their line layout)."""
    return {
        "lr": Setting(2e-5, f"{script}:27"),
        "batch_size": Setting(32, f"{script}:40", ACCUM),
        "grad_accum_steps": Setting(1, f"{script}:41", ACCUM),
        "epochs": Setting(10, f"{script}:25"),
        "max_seq_length": Setting(128, f"{script}:26", "longer sentences are split into windows of at most "
                                  "128 tokens (utils_preprocess.py), as here"),
        "lr_schedule": Setting("linear", "third_party/run_tag.py:102", "get_linear_schedule_with_warmup"),
        "warmup_steps": Setting(0, "", ARGPARSE),
        "weight_decay": Setting(0.0, "", ARGPARSE),
        "selection": Setting("metric", "third_party/run_tag.py:197", "best en-dev F1"),
        "save_strategy": Setting("best", f"{script}:{best}", BEST),
        "eval_interval": Setting(every[0], f"{script}:{every[1]}", "--save_steps: en-dev evaluation interval"),
        "dev_split": Setting("validation", "third_party/run_tag.py:196", "mode='dev' of --train_langs en"),
    }  # fmt: skip


QA = "scripts/train_qa.sh"
_QA = {
    "lr": Setting(3e-5, f"{QA}:30"),
    "batch_size": Setting(32, f"{QA}:26", "BATCH_SIZE=4 x GRAD_ACC=8: 32 examples per update, run here as one batch"),
    "grad_accum_steps": Setting(1, f"{QA}:27", "BATCH_SIZE=4 x GRAD_ACC=8, run here as one batch of 32"),
    "epochs": Setting(3, f"{QA}:31"),
    "max_seq_length": Setting(384, f"{QA}:29"),
    "doc_stride": Setting(128, f"{QA}:67"),
    "lr_schedule": Setting("linear", f"{QA}:71", "run_squad.py: get_linear_schedule_with_warmup"),
    "warmup_steps": Setting(500, f"{QA}:71"),
    "weight_decay": Setting(1e-4, f"{QA}:73", "bias and LayerNorm never decay, as transformers' Trainer"),
    "selection": Setting("last", f"{QA}:68", "--save_steps -1: no checkpoint during training; the final model predicts"),
    "save_strategy": Setting("eval", "", "no selection: xtuner's per-epoch checkpoints only serve resumption"),
    "eval_interval": Setting(None, "", "en dev is scored after each epoch for the dev curve only (none = every epoch)"),
    "dev_split": Setting("validation", f"{QA}:47", "PREDICT_FILE: SQuAD v1.1 dev"),
}  # fmt: skip

ENTRIES = {
    "xnli": {"finetune": _classify("scripts/train_xnli.sh", lr=(3e-5, 42), epochs=26, maxl=27, batch=40,
                                   every=(100, 67), best=71)},
    "pawsx": {"finetune": _classify("scripts/train_pawsx.sh", lr=(2e-5, 25), epochs=26, maxl=27, batch=41,
                                    every=(200, 63), best=74)},
    "udpos": {"finetune": _tag("scripts/train_udpos.sh", every=(500, 60), best=72)},
    "panx": {"finetune": _tag("scripts/train_panx.sh", every=(1000, 61), best=73)},
    "xquad": {"finetune": _QA},
    "mlqa": {"finetune": _QA},
    "tydiqa": {"finetune": {**_QA, "dev_split": Setting(
        "validation", f"{QA}:51", "PREDICT_FILE: TyDiQA-GoldP en dev, scored once after training (no selection); "
        "xtuner's tydiqa validation is SQuAD v1.1 dev, for the dev curve only")}},
}  # fmt: skip

XTREME = register_protocol(
    Protocol(
        name="xtreme",
        version=1,
        title="google-research/xtreme: XTREME's fine-tuning baseline for XLM-R large",
        repo="google-research/xtreme",
        commits=COMMITS,
        entries=ENTRIES,
    )
)
