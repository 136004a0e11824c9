"""Per-layer prefix keys/values through transformers' attention-function registry.

transformers 5 models call ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation](module, q, k, v, mask, **kw)``
in every self-attention layer, after the key/value projections and the split into heads, and they pass the
model's ``**kwargs`` down to that call. Deep prompt tuning therefore needs no copy of any model code: we register
one attention function, ``"xtuner_prefix"``, that

1. takes this layer's prefix from the ``xtuner_prefix_kv`` keyword (a ``[layers, 2, B, heads, psl, head_dim]``
   tensor) using ``module.layer_idx``,
2. concatenates prefix keys/values *before* the token keys/values (as HF's ``past_key_value`` did in the
   reference P-tuning v2 / MPT code),
3. extends the attention mask over the prefix (the prefix is always visible), and
4. calls transformers' own SDPA attention.

Queries are untouched, so every output keeps exactly the input length. Without the keyword the function is plain
SDPA, so a model switched to it behaves as before.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from xtuner.errors import XtunerError

ATTN_NAME = "xtuner_prefix"
PREFIX_KWARG = "xtuner_prefix_kv"


def extend_mask(mask: torch.Tensor | None, prefix_len: int) -> torch.Tensor | None:
    """Prepend `prefix_len` always-visible key columns to a 4D SDPA mask (bool: True = attend; float: additive)."""
    if mask is None:
        return None
    shape = (*mask.shape[:-1], prefix_len)
    visible = (
        torch.ones(shape, dtype=torch.bool, device=mask.device)
        if mask.dtype == torch.bool
        else torch.zeros(shape, dtype=mask.dtype, device=mask.device)
    )
    return torch.cat([visible, mask], dim=-1)


def prefix_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    xtuner_prefix_kv: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    if xtuner_prefix_kv is not None:
        layer = getattr(module, "layer_idx", None)
        if layer is None:
            raise XtunerError(
                f"{type(module).__name__} has no layer_idx; deep_prompt cannot tell which layer's prefix to use"
            )
        prefix_key, prefix_value = xtuner_prefix_kv[layer]
        key = torch.cat([prefix_key.to(key.dtype), key], dim=2)
        value = torch.cat([prefix_value.to(value.dtype), value], dim=2)
        attention_mask = extend_mask(attention_mask, prefix_key.shape[2])
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(ATTN_NAME, prefix_attention_forward)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, sdpa_mask)


def install(backbone: PreTrainedModel) -> None:
    """Route every attention call of `backbone` through :func:`prefix_attention_forward`."""
    backbone.set_attn_implementation(ATTN_NAME)
    if backbone.config._attn_implementation != ATTN_NAME:
        raise XtunerError(
            f"model type {backbone.config.model_type!r} does not use transformers' attention interface, "
            "so deep_prompt cannot add per-layer prefixes to it"
        )
