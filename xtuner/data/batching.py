"""Length-bucketed evaluation: sort features by length, batch neighbours, pad each batch only to its own
longest row, and put the outputs back in the ORIGINAL order.

Design: `bucketed_batches` is a pure, deterministic index plan (longest first, ties by index, so a memory
problem shows up on the first batch). `pad_collate` is transformers' DataCollatorWithPadding, or
DataCollatorForTokenClassification when a batch carries per-token labels (padded with -100). `predict` runs
the model under `torch.inference_mode()` (bf16 autocast only on a CUDA device that supports it), drops label
columns (it returns outputs, not losses) and bookkeeping columns, and returns numpy float32 outputs keyed by
the model output name: per-example outputs (sequence-classification `logits`) as one (N, C) array, per-token
outputs (token-classification `logits`, QA `start_logits`/`end_logits`) as a list of arrays trimmed to each
feature's length. Padding does not change a row's outputs (attention masks; XLM-R position ids skip padding),
so bucketed and in-order predictions agree up to float rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

from xtuner.data.preprocess import MODEL_INPUTS

PER_TOKEN_OUTPUTS = ("start_logits", "end_logits")
OUTPUT_NAMES = ("logits", "start_logits", "end_logits")


def bucketed_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length (longest first, ties by index) and chunked into batches of `batch_size`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def sequential_batches(n: int, batch_size: int) -> list[list[int]]:
    """Indices in dataset order, chunked (the unbucketed plan)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def pad_collate(
    tokenizer: Any, *, pad_to_multiple_of: int | None = None, max_length: int | None = None
) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
    """Dynamic padding to the batch's longest row (or to `max_length` when given: the fixed-length baseline)."""
    padding: bool | str = "max_length" if max_length else True
    plain = DataCollatorWithPadding(
        tokenizer, padding=padding, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of
    )
    tokens = DataCollatorForTokenClassification(
        tokenizer, padding=padding, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of
    )

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if features and isinstance(features[0].get("labels"), list | tuple):
            return tokens(features)
        return plain(features)

    return collate


def _autocast(device: torch.device, use_bf16: bool) -> contextlib.AbstractContextManager:
    if use_bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def predict(
    model: torch.nn.Module,
    dataset: Any,
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    batch_size: int,
    *,
    bucketed: bool = True,
    device: torch.device | str | None = None,
    use_bf16: bool = False,
) -> dict[str, np.ndarray | list[np.ndarray]]:
    """Model outputs for every feature of `dataset`, in dataset order (see module doc for the shapes)."""
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    cols = [c for c in MODEL_INPUTS if c in dataset.column_names]
    data = dataset.select_columns(cols).to_dict()
    n = len(data["input_ids"])
    if "length" in dataset.column_names:
        lengths = list(dataset["length"])
    else:
        lengths = [len(ids) for ids in data["input_ids"]]
    plan = bucketed_batches(lengths, batch_size) if bucketed else sequential_batches(n, batch_size)

    results: dict[str, list[Any]] = {}
    model.eval()
    with torch.inference_mode(), _autocast(device, use_bf16):
        for idx in plan:
            batch = collate([{c: data[c][i] for c in cols} for i in idx])
            out = model(**{k: v.to(device) for k, v in batch.items()})
            for name in OUTPUT_NAMES:
                t = getattr(out, name, None) if not isinstance(out, dict) else out.get(name)
                if t is None:
                    continue
                arr = t.float().cpu().numpy()
                rows = results.setdefault(name, [None] * n)
                per_token = name in PER_TOKEN_OUTPUTS or arr.ndim == 3
                for j, i in enumerate(idx):
                    rows[i] = arr[j, : lengths[i]] if per_token else arr[j]
    return {
        name: (rows if (name in PER_TOKEN_OUTPUTS or (rows and rows[0].ndim == 2)) else np.stack(rows))
        for name, rows in results.items()
    }
