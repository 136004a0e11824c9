"""Build recipe of the built-in `tiny-xlmr` encoder: tokenizer + MLM pretraining on the synthetic corpus.

1. Text: `xtuner.synth.corpus` lines in all seven languages, 30 % of them code-switched.
2. Tokenizer: a SentencePiece-style Unigram model trained with the `tokenizers` library, wrapped in transformers'
   own `XLMRobertaTokenizer` (same pre-tokenisation and special tokens as XLM-R: <s>=0 <pad>=1 </s>=2 <unk>=3,
   <mask> last). The vocabulary (2,000) is smaller than the number of word types (~3,400), so rarer near-cognates share
   sub-word pieces.
3. Model: `XLMRobertaForMaskedLM` from a small config, pretrained with masked-LM (15 %) through transformers'
   Trainer; a progress bar shows the loss.
4. Save with `save_pretrained` (model + tokenizer) and write `xtuner_build.json` LAST: it records the recipe, the
   seed, the steps and a SHA-256 per file, so a partial or corrupt build is detected (see `verify_build`).

Deterministic from the seed on a given machine (same torch build); the budget is a number of optimizer steps.
`--minutes` converts to steps through a fixed nominal rate so that it stays deterministic.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from xtuner.paths import file_sha256

RECIPE_VERSION = 2  # 2: tokenizer scores rounded and pieces sorted, so rebuilds are bit-identical
# 1 torch thread on the 2-core dev box; converts --minutes to a deterministic number of steps
NOMINAL_STEPS_PER_MINUTE = 150
MANIFEST = "xtuner_build.json"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")

CONFIG = dict(
    hidden_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=512,
    max_position_embeddings=514,  # 512 tokens + XLM-R's padding offset
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    type_vocab_size=1,
)
VOCAB_SIZE = 2000
DEFAULT_STEPS = 1500
SEQ_LEN = 128


def steps_for_minutes(minutes: float) -> int:
    return max(1, int(round(minutes * NOMINAL_STEPS_PER_MINUTE)))


def verify_build(path: Path) -> str | None:
    """None if `path` holds a complete, intact build; else a reason why it does not."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return f"no {MANIFEST} (partial or foreign build)"
    try:
        info = json.loads(manifest.read_text())
        files = info["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        return f"unreadable {MANIFEST}: {e}"
    for name in REQUIRED_FILES:
        if name not in files:
            return f"{MANIFEST} does not list {name}"
    for name, digest in files.items():
        f = path / name
        if not f.is_file():
            return f"missing file {name}"
        if file_sha256(f) != digest:
            return f"checksum mismatch for {name}"
    return None


def manifest(path: Path) -> dict:
    try:
        return json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def corpus_size(steps: int, batch_size: int = 64) -> int:
    """Lines of pretraining text: about one pass over fresh text, 2k-60k lines (deterministic in `steps`)."""
    return max(2000, min(60000, steps * batch_size))


def train_tokenizer(lines: list[str], vocab_size: int = VOCAB_SIZE):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizer

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size - 1,  # + <mask>
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        shrinking_factor=0.75,
        max_piece_length=8,
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    # the trainer runs in parallel: the last float digits of the scores, and so the order of near-ties, vary run
    # to run. Round the scores and sort the pieces (specials first) so that ids are deterministic.
    raw = [(piece, round(float(score), 2)) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]
    specials, pieces = raw[:4], sorted(raw[4:], key=lambda ps: (-ps[1], ps[0]))
    vocab = specials + pieces
    vocab.append(("<mask>", 0.0))
    return XLMRobertaTokenizer(vocab=vocab, model_max_length=512)


def build_tiny_xlmr(
    out_dir: Path,
    *,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    progress: bool = True,
    threads: int | None = None,
) -> Path:
    """Build the tokenizer and pretrain the model; writes atomically into `out_dir`.

    `threads` sets torch's intra-op threads (default: $XTUNER_NUM_THREADS, else torch's default). On a busy
    2-core machine one thread was 2-8x faster than two (OpenMP threads spin while they wait for a core)."""
    import torch
    from transformers import (
        DataCollatorForLanguageModeling,
        PrinterCallback,
        Trainer,
        TrainingArguments,
        XLMRobertaConfig,
        XLMRobertaForMaskedLM,
        set_seed,
    )

    from xtuner.synth.corpus import corpus_lines

    started = time.time()
    threads = threads or int(os.environ.get("XTUNER_NUM_THREADS", "0") or 0)
    if threads:
        torch.set_num_threads(threads)
    set_seed(seed)
    lines = list(corpus_lines(corpus_size(steps), seed=seed))
    tokenizer = train_tokenizer(lines[:20000])
    enc = tokenizer(lines, truncation=True, max_length=SEQ_LEN, return_special_tokens_mask=True)
    dataset = [
        {"input_ids": ids, "special_tokens_mask": m}
        for ids, m in zip(enc["input_ids"], enc["special_tokens_mask"], strict=True)
    ]
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **CONFIG,
    )
    model = XLMRobertaForMaskedLM(config)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=seed)
    batch_size = 64
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            learning_rate=1e-3,
            warmup_steps=min(500, steps // 10),
            lr_scheduler_type="linear",
            weight_decay=0.01,
            seed=seed,
            data_seed=seed,
            save_strategy="no",
            report_to=[],
            logging_steps=max(1, min(50, steps // 20)),
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=dataset, data_collator=collator,
            callbacks=[_loss_bar(steps)] if progress else [],
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # the progress bar shows the loss; no log dicts on stdout
        trainer.train()
    final_loss = next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), math.nan)

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    tmp_dir.chmod(0o755)
    model.save_pretrained(tmp_dir)
    tokenizer.save_pretrained(tmp_dir)
    files = {p.name: file_sha256(p) for p in sorted(tmp_dir.iterdir()) if p.is_file()}
    manifest = {
        "recipe": "tiny-xlmr",
        "recipe_version": RECIPE_VERSION,
        "seed": seed,
        "steps": steps,
        "final_mlm_loss": final_loss,
        "corpus": {"lines": len(lines), "cs_share": 0.3, "switch_p": 0.3},
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "build_seconds": round(time.time() - started, 1),
        "files": files,
    }
    (tmp_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp_dir, out_dir)
    return out_dir


def _loss_bar(total: int):
    """A Trainer callback: a rich progress bar showing the MLM loss (defined lazily: transformers is heavy)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from transformers import TrainerCallback

    progress = Progress(
        TextColumn("[bold]pretraining tiny-xlmr"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
    )  # fmt: skip
    task = progress.add_task("mlm", total=total, loss="-")

    class LossBar(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            progress.start()

        def on_step_end(self, args, state, control, **kw):
            progress.update(task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                progress.update(task, loss=f"{logs['loss']:.3f}")

        def on_train_end(self, args, state, control, **kw):
            progress.stop()

    return LossBar()
