"""deep_prompt's model code (the method, its settings and its doc: ``deep_prompt.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from xtuner.methods._base import BuildRequest
from xtuner.methods._prefix_attention import PREFIX_KWARG, install
from xtuner.methods._prompt import (
    init_linear,
    load_backbone,
    pool,
    position_ids,
    with_backbone_dropout,
    with_head,
)

if TYPE_CHECKING:
    from xtuner.methods.deep_prompt import DeepPromptSettings


class PrefixEncoder(nn.Module):
    """The per-layer prefix: ``forward() -> [psl, layers * 2 * hidden]`` (P-tuning v2 layout)."""

    def __init__(
        self, psl: int, layers: int, hidden: int, projection: bool, mlp_hidden: int, std: float
    ) -> None:
        super().__init__()
        self.prefix_projection = projection
        width = layers * 2 * hidden
        self.embedding = nn.Embedding(psl, hidden if projection else width)
        nn.init.normal_(self.embedding.weight, std=std)
        if projection:
            self.trans = nn.Sequential(
                init_linear(nn.Linear(hidden, mlp_hidden), std),
                nn.Tanh(),
                init_linear(nn.Linear(mlp_hidden, width), std),
            )

    def forward(self) -> torch.Tensor:
        prefix = self.embedding.weight
        return self.trans(prefix) if self.prefix_projection else prefix


class DeepPromptEncoder(nn.Module):
    def __init__(self, backbone: PreTrainedModel, settings: DeepPromptSettings) -> None:
        super().__init__()
        config = backbone.config
        self.backbone = backbone.requires_grad_(False)
        self.psl = settings.psl
        self.layers = config.num_hidden_layers
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.shift_positions = settings.shift_positions
        self.prefix_encoder = PrefixEncoder(
            settings.psl,
            self.layers,
            config.hidden_size,
            settings.prefix_projection,
            settings.prefix_hidden_size,
            config.initializer_range,
        )
        self.dropout = nn.Dropout(settings.prefix_dropout)
        install(backbone)

    def prefix_key_values(self, batch: int) -> torch.Tensor:
        """``[layers, 2, B, heads, psl, head_dim]``: per layer, the prefix keys (0) and values (1)."""
        prefix = self.prefix_encoder().unsqueeze(0).expand(batch, -1, -1)
        prefix = prefix.view(batch, self.psl, self.layers * 2, self.heads, self.head_dim)
        prefix = self.dropout(prefix)
        return prefix.permute(2, 0, 3, 1, 4).unflatten(0, (self.layers, 2))

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        *,
        output_hidden_states: bool = False,
    ) -> BaseModelOutputWithPooling:
        """The backbone run with the prefix in every layer (and the shifted positions); every output covers the
        input positions only (the prefix adds keys and values, never positions)."""
        positions = position_ids(self.backbone, input_ids, self.psl) if self.shift_positions else None
        return self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=positions,
            output_hidden_states=output_hidden_states,
            **{PREFIX_KWARG: self.prefix_key_values(input_ids.shape[0])},
        )

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, ...]:
        """Embedding output and every layer's output, ``[B, T, H]`` each (xtuner.methods.encoder_hidden_states)."""
        return self.encode(input_ids, attention_mask, token_type_ids, output_hidden_states=True).hidden_states

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.encode(input_ids, attention_mask, token_type_ids)
        sequence = out.last_hidden_state
        pooled = out.pooler_output if out.pooler_output is not None else pool(self.backbone, sequence)
        return sequence, pooled


def build_deep_prompt(request: BuildRequest, settings: DeepPromptSettings) -> nn.Module:
    request = with_backbone_dropout(request, settings.backbone_dropout)
    return with_head(DeepPromptEncoder(load_backbone(request), settings), request)
