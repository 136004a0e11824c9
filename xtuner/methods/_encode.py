"""The encoder of any built model, run as the model runs it for its task head, but without the head.

`encoder_hidden_states(model, ...)` returns the embedding output and every layer's output (``[B, T, H]`` each,
over the input positions) for every method:

- deep_prompt: the backbone with the learned prefix keys/values in every layer and the shifted position ids (the
  encoder's own ``hidden_states``; `encode` is what its heads call too, so this is the same computation);
- soft_prompt: the backbone with the virtual tokens at the input; their positions are sliced off the outputs;
- lora: the backbone with the adapters (peft injects them into the backbone's own layers);
- finetune (and any transformers model): ``model.base_model``, i.e. the tuned backbone.

Representation analyses and the retrieval tasks read sentence vectors from here.
"""

from __future__ import annotations

import torch
from torch import nn

from xtuner.errors import XtunerError


def backbone_of(model: nn.Module) -> nn.Module:
    """The transformers backbone under any built model (its config says the depth and the vocabulary)."""
    inner = _unwrap(model)
    prompt = _prompt_encoder(inner)
    if prompt is not None:
        return prompt.backbone
    base = getattr(inner, "base_model", None)
    if isinstance(base, nn.Module):
        return base
    raise XtunerError(f"cannot find the encoder of a {type(model).__name__} model")


def encoder_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    inner = _unwrap(model)
    prompt = _prompt_encoder(inner)
    if prompt is not None:
        return tuple(prompt.hidden_states(input_ids, attention_mask, token_type_ids))
    base = backbone_of(inner)
    kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
    out = base(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **kwargs)
    if getattr(out, "hidden_states", None) is None:
        raise XtunerError(f"the encoder of a {type(model).__name__} model returns no hidden states")
    return tuple(out.hidden_states)


def _unwrap(model: nn.Module) -> nn.Module:
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model


def _prompt_encoder(model: nn.Module) -> nn.Module | None:
    """A prompt method's encoder: the model itself (no head) or its ``encoder`` attribute."""
    for candidate in (model, getattr(model, "encoder", None)):
        if callable(getattr(candidate, "hidden_states", None)) and hasattr(candidate, "backbone"):
            return candidate
    return None
