"""GPU efficiency options of a trial, passed to transformers' TrainingArguments (`training_args`).

| setting | default | TrainingArguments | effect on results |
|---|---|---|---|
| ``optimizer`` | ``auto``: fused AdamW on CUDA, ``adamw_torch`` elsewhere | ``optim`` | numerics only: the same AdamW update in one fused kernel (rounding differs) |
| ``group_by_length`` | off | ``train_sampling_strategy="group_by_length"`` | a different order of training examples (batches of similar lengths, less padding): not the same run |
| ``torch_compile`` | off | ``torch_compile`` | numerics only, but every trial pays the compile time (tens of seconds) |
| ``dataloader_workers`` | 0 | ``dataloader_num_workers`` (+ persistent workers) | the same batches, but the loader draws its workers' seed from torch's global generator, which shifts the dropout masks: like another seed (a tiny CPU trial's second-epoch dev F1 moved from 41.8 to 42.4 with one worker), so off by default |
| ``pin_memory`` | on | ``dataloader_pin_memory`` | none (CUDA only: faster host-to-GPU copies) |

Attention is already PyTorch's SDPA for every method (transformers' default; deep_prompt's prefix attention calls
the same SDPA function). Defaults keep CPU trials exactly as before: the CPU benchmarks and tests compute what
they computed. `bench/bench_gpu_mfu.py` measures each option's gain on the paper's shapes.
"""

from __future__ import annotations

from typing import Any


def training_args(cfg: Any, cuda: bool) -> dict[str, Any]:
    """The TrainingArguments keywords of `cfg`'s efficiency settings on this device."""
    optim = cfg.optimizer if cfg.optimizer != "auto" else ("adamw_torch_fused" if cuda else "adamw_torch")
    workers = cfg.dataloader_workers
    args: dict[str, Any] = {
        "optim": optim,
        "torch_compile": bool(cfg.torch_compile),
        "dataloader_num_workers": workers,
        "dataloader_persistent_workers": workers > 0,
        "dataloader_pin_memory": bool(cfg.pin_memory),
    }
    if cfg.group_by_length:
        args["train_sampling_strategy"] = "group_by_length"
    return args
