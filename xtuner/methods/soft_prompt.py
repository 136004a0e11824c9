"""soft_prompt: prompt tuning at the input only (Lester et al. 2021).

``psl`` trainable virtual-token embeddings, initialised from randomly drawn rows of the vocabulary embedding, are
prepended to the word embeddings; the backbone adds position/type embeddings (the virtual tokens take the first
positions) and runs frozen; the attention mask is extended over the prompt. The token states are then sliced back
to the input positions, so token-classification logits and QA start/end indices refer to the input exactly (peft's
PROMPT_TUNING keeps the virtual positions there). Heads as for deep_prompt: the frozen pooler on the first *input*
token for sequence classification (as the reference ``RobertaPromptForSequenceClassification``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xtuner.methods import register_method
from xtuner.methods._base import BuildRequest, Method
from xtuner.methods._prompt_settings import PromptSettings

if TYPE_CHECKING:  # the model code (torch, transformers) loads when a model is built: `_soft_prompt_model`
    from torch import nn


def build(request: BuildRequest, settings: PromptSettings) -> nn.Module:
    from xtuner.methods._soft_prompt_model import build_soft_prompt

    return build_soft_prompt(request, settings)


def __getattr__(name: str) -> Any:
    if name == "SoftPromptEncoder":
        from xtuner.methods import _soft_prompt_model

        return _soft_prompt_model.SoftPromptEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_method(
    Method(
        name="soft_prompt",
        settings=PromptSettings,
        build=build,
        description="prompt tuning: trainable virtual tokens at the input embedding layer only, frozen backbone",
        default_lr=3e-2,
    )
)
