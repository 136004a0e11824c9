"""GPU efficiency: training throughput and model FLOPs utilisation (MFU) of fine-tuning and deep prompt tuning on the
XLM-R large shape at the paper's sequence lengths, for each efficiency option of a trial (xtuner/trial/efficiency.py),
through transformers' Trainer exactly as a trial configures it.

    PYTHONPATH=. python3 bench/bench_gpu_mfu.py --out bench/results/gpu_mfu.json          # on a GPU (~6-8 min)
    .venv/bin/python bench/bench_gpu_mfu.py --dry-run --out /tmp/mfu.json                   # CPU rehearsal, tiny shape

- Model: a random-init XLM-R shape (bench_gpu.save_backbone: large = 1024 hidden, 24 layers), built through
  `xtuner.methods.build_model` (finetune, deep_prompt psl 16), sequence classification with 3 labels.
- Data: random token ids with lengths drawn once per config (seed 0): uniform between a quarter of the maximum and
  the maximum, as real sentence pairs spread below their cut; padded per batch by xtuner's `pad_collate` (with the
  shipped tiny model's tokenizer, whose pad id is XLM-R's).
- Training: `Trainer.train` with `max_steps` = warm-up + timed steps, the trial's `TrainingArguments` (bf16 on
  CUDA, AdamW), no evaluation or saving; the timed window runs from the end of the warm-up steps to the end of
  training (a callback, `torch.cuda.synchronize` at both ends).
- Steps, cumulative (each adds one option to the previous): ``base`` (adamw_torch, random batches, no workers),
  ``fused`` (adamw_torch_fused), ``grouped`` (+ group_by_length), ``workers`` (+ 2 loader workers, pinned memory),
  ``compile`` (+ torch.compile). `--steps-only` picks some.
- MFU = model FLOPs / time / peak. Model FLOPs per real (non-padding) token: 6 N (fine-tuning: forward 2N, backward
  4N) or 4 N (frozen backbone: no weight gradients) with N the non-embedding parameters, plus attention
  12 L d T per token (fwd + bwd) for sequence length T. Padding is not useful work: it shows as lost MFU. Peak: a
  big bf16 (fp32 on CPU) matmul measured here (``peak_measured``) and the card's dense bf16 datasheet figure where
  known (``peak_spec``: H100/H200 989 TFLOP/s).
Writes one JSON (``--out``), rewritten after every measurement; a time budget (``--budget-s``) skips the rest.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_gpu (its save_backbone and shapes)

SPEC_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
STEPS = {
    "base": {"optimizer": "adamw_torch"},
    "fused": {"optimizer": "adamw_torch_fused"},
    "grouped": {"optimizer": "adamw_torch_fused", "group_by_length": True},
    "workers": {"optimizer": "adamw_torch_fused", "group_by_length": True, "dataloader_workers": 2,
                "pin_memory": True},
    "compile": {"optimizer": "adamw_torch_fused", "group_by_length": True, "dataloader_workers": 2,
                "pin_memory": True, "torch_compile": True},
}  # fmt: skip
# the paper's lengths (xtuner/protocols/mpt.py): sentence tasks 128 (batch 32), QA 384 and UD-POS 512 (batch 16)
LENGTHS = [(128, 32), (384, 16), (512, 16)]
METHODS = {"finetune": {}, "deep_prompt": {"psl": 16}}


def peak_tflops(device: str) -> float:
    """A large matmul's rate (bf16 on CUDA, fp32 on CPU), TFLOP/s."""
    import torch

    n, dtype = (8192, torch.bfloat16) if device == "cuda" else (1024, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps, t0 = 10, time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def sig(x: float) -> float:
    return float(f"{x:.4g}")


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def model_flops_per_token(shape: dict, method: str, seq: int) -> float:
    d, layers, ff = shape["hidden_size"], shape["num_hidden_layers"], shape["intermediate_size"]
    n = layers * (4 * d * d + 2 * d * ff)  # attention projections and the feed-forward, per layer
    return (6 if method == "finetune" else 4) * n + 12 * layers * d * seq


def dataset(vocab: int, seq: int, n: int, seed: int = 0):
    import datasets
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(seq // 4, 8), seq + 1, size=n)
    ids = [[0, *rng.integers(5, vocab, size=int(k) - 2).tolist(), 2] for k in lengths]
    return datasets.Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids],
                                       "labels": rng.integers(0, 3, size=n).tolist()})  # fmt: skip


def run_one(path: Path, shape: dict, method: str, seq: int, batch: int, options: dict, p, device: str,
            tokenizer) -> dict:  # fmt: skip
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from xtuner.data.batching import pad_collate
    from xtuner.methods import build_model
    from xtuner.tasks.base import HeadType
    from xtuner.trial import TrialConfig
    from xtuner.trial.efficiency import training_args

    torch.manual_seed(0)
    built = build_model(str(path), HeadType.SEQUENCE_CLASSIFICATION, 3, method, METHODS[method])
    cfg = TrialConfig(task="synth-xnli", lr=1e-5, **options)
    steps = p.warmup + p.steps
    data = dataset(shape["vocab_size"], seq, steps * batch)
    times: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == p.warmup:
                sync(device)
                times["start"], times["tokens0"] = time.perf_counter(), float(state.num_input_tokens_seen)

        def on_train_end(self, args, state, control, **kw):
            sync(device)
            times["end"], times["tokens1"] = time.perf_counter(), float(state.num_input_tokens_seen)

    with tempfile.TemporaryDirectory(prefix="mfu-") as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, max_steps=steps,
                                 learning_rate=1e-5, bf16=device == "cuda", use_cpu=device != "cuda",
                                 eval_strategy="no", save_strategy="no", report_to=[], disable_tqdm=True,
                                 logging_strategy="no", remove_unused_columns=False, seed=0,
                                 include_num_input_tokens_seen="non_padding",
                                 **training_args(cfg, device == "cuda"))  # fmt: skip
        trainer = Trainer(model=built.model, args=args, train_dataset=data, data_collator=pad_collate(tokenizer),
                          callbacks=[Clock()])  # fmt: skip
        t0 = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - t0
    elapsed = times["end"] - times["start"]
    tokens = times["tokens1"] - times["tokens0"]
    flops = tokens * model_flops_per_token(shape, method, seq)
    row = {"options": options, "seq": seq, "batch": batch, "timed_steps": p.steps,
           "examples_per_s": round(p.steps * batch / elapsed, 2), "real_tokens_per_s": round(tokens / elapsed, 1),
           "model_tflops": sig(flops / elapsed / 1e12), "wall_s": round(total, 2),
           "trainable_params": built.trainable_params}  # fmt: skip
    if device == "cuda":
        row["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        torch.cuda.reset_peak_memory_stats()
    del trainer, built
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dry-run", action="store_true", help="tiny shape, few steps, on the CPU")
    ap.add_argument("--budget-s", type=float, default=540.0)
    ap.add_argument("--steps-only", nargs="+", choices=list(STEPS), default=list(STEPS))
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p = ap.parse_args()
    import torch
    import transformers
    from bench_gpu import SHAPES, SMOKE_SHAPES, save_backbone

    transformers.logging.set_verbosity_error()
    device = "cuda" if torch.cuda.is_available() and not p.dry_run else "cpu"
    if p.dry_run:
        name, shape = "tiny-a", SMOKE_SHAPES["tiny-a"]
        lengths, p.warmup, p.steps = [(32, 8)], 1, 2
        if "compile" in p.steps_only and "--steps-only" not in sys.argv:
            p.steps_only = [s for s in p.steps_only if s != "compile"]  # a CPU compile takes minutes
    else:
        name, shape = "xlm-roberta-large", SHAPES["xlm-roberta-large"]
        lengths, p.warmup, p.steps = LENGTHS, 5, 20
    started = time.time()
    doc: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "device": device, "shape": name,
                           "dry_run": p.dry_run, "torch": torch.__version__, "transformers": transformers.__version__,
                           "results": []}  # fmt: skip
    if device == "cuda":
        gpu = torch.cuda.get_device_name(0)
        doc["gpu"] = gpu
        doc["peak_spec_tflops"] = next((v for k, v in SPEC_PEAK_TFLOPS.items() if k in gpu), None)

    def save() -> None:
        doc["elapsed_s"] = round(time.time() - started, 1)
        p.out.parent.mkdir(parents=True, exist_ok=True)
        p.out.write_text(json.dumps(doc, indent=1))

    doc["peak_measured_tflops"] = round(peak_tflops(device), 3)
    save()
    from transformers import AutoTokenizer

    from xtuner.models import resolve_model

    # padding only (the data is token ids already): XLM-R's pad id 1, as the shipped tiny model's tokenizer has it
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("builtin:tiny-xlmr"))
    with tempfile.TemporaryDirectory(prefix="mfu-model-") as tmp:
        path = Path(tmp) / name
        save_backbone(shape, path, device)
        for method in p.methods:
            for seq, batch in lengths:
                for step in p.steps_only:
                    if time.time() - started > p.budget_s:
                        doc["results"].append({"method": method, "seq": seq, "step": step, "skipped": "budget"})
                        continue
                    try:
                        row = run_one(path, shape, method, seq, batch, STEPS[step], p, device, tokenizer)
                        peak = doc.get("peak_spec_tflops") or doc["peak_measured_tflops"]
                        row.update(method=method, step=step, mfu=sig(row["model_tflops"] / peak),
                                   mfu_of_measured_peak=sig(row["model_tflops"] / doc["peak_measured_tflops"]))  # fmt: skip
                        print(f"[mfu] {method:11} seq {seq:3} {step:8} {row['examples_per_s']:8.1f} ex/s "
                              f"{row['model_tflops']:8.3f} TFLOP/s  MFU {row['mfu']:.3f}", flush=True)  # fmt: skip
                    except Exception as e:  # noqa: BLE001 - recorded; the run goes on
                        row = {"method": method, "seq": seq, "step": step,
                               "error": f"{type(e).__name__}: {e}\n{''.join(traceback.format_exception(e)[-4:])}"}  # fmt: skip
                        print(f"[mfu] {method} {seq} {step}: FAILED {type(e).__name__}: {e}", flush=True)
                    doc["results"].append(row)
                    save()
    doc["complete"] = True
    save()


if __name__ == "__main__":
    main()
