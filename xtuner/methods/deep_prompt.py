"""deep_prompt: deep prompt tuning (P-tuning v2; Tu, Xiong & Zhou 2022, reference code salesforce/MPT).

Trainable key and value vectors of length ``psl`` are prepended in EVERY self-attention layer; the whole backbone
(embeddings, encoder, pooler) is frozen; only the prefix and the task head train. Formulation as in the reference
``PrefixEncoder``/``get_prompt``:

- ``prefix_encoder.embedding``: ``psl x (layers * 2 * hidden)`` (or ``psl x hidden`` through a 2-layer tanh MLP when
  ``prefix_projection``), initialised N(0, initializer_range) as transformers initialised it in the reference;
- viewed as ``[B, psl, 2 * layers, heads, head_dim]``, dropout ``prefix_dropout`` (an independent mask per example),
  then layer ``i`` uses slice ``2i`` as keys and ``2i + 1`` as values;
- keys/values are concatenated before the token keys/values after the key/value projections, per head, and the
  attention mask is extended over the prefix (see ``_prefix_attention``);
- ``shift_positions`` (default on): the reference passed the prefix as HF ``past_key_values``, which offsets the
  token position ids by ``psl``; we reproduce that. Turn it off for unshifted positions.

Trainable parameters without projection: ``psl * layers * 2 * hidden + head`` (786,432 + head for
xlm-roberta-large at psl 16). peft is not used: its PREFIX_TUNING fails on XLM-R under transformers 5 ("Model does
not support past key values").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from xtuner.methods import register_method
from xtuner.methods._base import BuildRequest, Method
from xtuner.methods._prompt_settings import PromptSettings

if TYPE_CHECKING:  # the model code (torch, transformers) loads when a model is built: `_deep_prompt_model`
    from torch import nn

MODEL_NAMES = ("PrefixEncoder", "DeepPromptEncoder")  # in `_deep_prompt_model`, also importable from here


class DeepPromptSettings(PromptSettings):
    shift_positions: bool = Field(
        True, description="offset token position ids by psl, as HF past_key_values did in the reference code"
    )

    def position_offset(self) -> int:
        return self.psl if self.shift_positions else 0  # the prefix itself is keys and values, no positions


def build(request: BuildRequest, settings: DeepPromptSettings) -> nn.Module:
    from xtuner.methods._deep_prompt_model import build_deep_prompt

    return build_deep_prompt(request, settings)


def __getattr__(name: str) -> Any:
    if name in MODEL_NAMES:
        from xtuner.methods import _deep_prompt_model

        return getattr(_deep_prompt_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_method(
    Method(
        name="deep_prompt",
        settings=DeepPromptSettings,
        build=build,
        description="deep prompt tuning: trainable prefix keys/values in every layer, frozen backbone",
        default_lr=1e-2,
    )
)
