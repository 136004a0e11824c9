"""soft_prompt's model code (the method and its doc: ``soft_prompt.py``)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from xtuner.methods._base import BuildRequest
from xtuner.methods._prompt import (
    init_linear,
    load_backbone,
    pool,
    position_ids,
    virtual_position_ids,
    with_backbone_dropout,
    with_head,
)
from xtuner.methods._prompt_settings import PromptSettings


class SoftPromptEncoder(nn.Module):
    def __init__(self, backbone: PreTrainedModel, settings: PromptSettings) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False)
        self.psl = settings.psl
        words = backbone.get_input_embeddings()
        hidden = words.embedding_dim
        self.embedding = nn.Embedding(settings.psl, hidden)
        with torch.no_grad():
            self.embedding.weight.copy_(words.weight[torch.randint(0, words.num_embeddings, (settings.psl,))])
        self.prefix_projection = settings.prefix_projection
        if settings.prefix_projection:
            std = backbone.config.initializer_range
            self.trans = nn.Sequential(
                init_linear(nn.Linear(hidden, settings.prefix_hidden_size), std),
                nn.Tanh(),
                init_linear(nn.Linear(settings.prefix_hidden_size, hidden), std),
            )
        self.dropout = nn.Dropout(settings.prefix_dropout)

    def prompt(self, batch: int) -> torch.Tensor:
        prompt = self.embedding.weight
        if self.prefix_projection:
            prompt = self.trans(prompt)
        return self.dropout(prompt.unsqueeze(0).expand(batch, -1, -1))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sequence = self._run(input_ids, attention_mask, token_type_ids, False).last_hidden_state[
            :, self.psl :
        ]
        return sequence, pool(self.backbone, sequence)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, ...]:
        """Embedding output and every layer's output over the INPUT positions (the virtual tokens sliced off)."""
        states = self._run(input_ids, attention_mask, token_type_ids, True).hidden_states
        return tuple(h[:, self.psl :] for h in states)

    def _run(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        output_hidden_states: bool,
    ):
        batch, device = input_ids.shape[0], input_ids.device
        words = self.backbone.get_input_embeddings()(input_ids)
        embeds = torch.cat([self.prompt(batch).to(words.dtype), words], dim=1)
        positions = torch.cat(
            [
                virtual_position_ids(self.backbone, batch, self.psl, device),
                position_ids(self.backbone, input_ids, self.psl),
            ],
            dim=1,
        )
        prefix_shape = (batch, self.psl)
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask.new_ones(prefix_shape), attention_mask], dim=1)
        if token_type_ids is not None:
            token_type_ids = torch.cat([token_type_ids.new_zeros(prefix_shape), token_type_ids], dim=1)
        return self.backbone(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=positions,
            output_hidden_states=output_hidden_states,
        )


def build_soft_prompt(request: BuildRequest, settings: PromptSettings) -> nn.Module:
    request = with_backbone_dropout(request, settings.backbone_dropout)
    return with_head(SoftPromptEncoder(load_backbone(request), settings), request)
