"""What the prompt methods (deep_prompt, soft_prompt) share: settings, the frozen backbone, position ids and the
task heads.

The heads follow the reference code (P-tuning v2 / salesforce MPT, ``Roberta{Prefix,Prompt}For*``):
- sequence classification: the backbone's *frozen* pretrained pooler, then dropout, then a trainable linear layer;
- token classification: dropout, then a linear layer on every token state;
- extractive QA: a linear layer to start/end logits on every token state.
The losses are transformers' own (``LOSS_MAPPING``), the same the stock ``*For*`` heads use, and the outputs are
the stock ``ModelOutput`` types, so the HF Trainer treats these models like the fine-tuned ones. Each head model
has the forward signature of its HF counterpart, so the Trainer finds the right label names. A head model wraps a
prompt *encoder*: a module with a ``backbone`` attribute whose ``forward(input_ids, attention_mask, token_type_ids)``
returns the token states ``[B, T, H]`` (input positions only) and a pooled state ``[B, H]``.

``backbone_dropout`` sets the frozen backbone's hidden dropout (``config.hidden_dropout_prob``: embeddings,
attention output and feed-forward output of every layer), as the reference's ``--hidden_dropout_prob`` does
(salesforce/MPT model/utils.py:108). The head's dropout follows it (transformers' rule: ``classifier_dropout``, else
``hidden_dropout_prob``), as in the reference, where one value drives both. Like every dropout it acts only in
training mode: Trainer switches the whole model, frozen backbone included, to train() for training steps and to
eval() for evaluation.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.loss.loss_utils import LOSS_MAPPING
from transformers.modeling_outputs import (
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

from xtuner.errors import XtunerError
from xtuner.methods._base import BuildRequest
from xtuner.methods._prompt_settings import PromptSettings as PromptSettings  # re-exported
from xtuner.tasks.base import HeadType


def with_backbone_dropout(request: BuildRequest, dropout: float | None) -> BuildRequest:
    """`request` whose backbone config has hidden_dropout_prob = `dropout` (unchanged when None)."""
    if dropout is None:
        return request
    config = copy.deepcopy(request.config)
    config.hidden_dropout_prob = dropout
    return dataclasses.replace(request, config=config)


def load_backbone(request: BuildRequest) -> PreTrainedModel:
    """AutoModel: embeddings, encoder and pooler (the prompt encoders freeze all of it)."""
    try:
        backbone = AutoModel.from_pretrained(
            request.model_path, config=request.config, trust_remote_code=request.trust_remote_code
        )
    except (OSError, ValueError) as e:
        raise XtunerError(f"cannot load model {request.model_path!r}: {e}") from None
    return backbone


def pool(backbone: PreTrainedModel, sequence_output: torch.Tensor) -> torch.Tensor:
    """The backbone's own pooler on the first token (frozen), or the first token state if it has none."""
    pooler = getattr(backbone, "pooler", None)
    return pooler(sequence_output) if pooler is not None else sequence_output[:, 0]


def _first_position(backbone: PreTrainedModel) -> int:
    """RoBERTa-family embeddings number positions from padding_idx + 1; others from 0."""
    emb = getattr(backbone, "embeddings", None)
    if hasattr(emb, "create_position_ids_from_input_ids"):
        return emb.padding_idx + 1
    return 0


def position_ids(backbone: PreTrainedModel, input_ids: torch.Tensor, offset: int) -> torch.Tensor:
    """Position ids of the input tokens when `offset` prompt positions precede them (padding-aware for
    RoBERTa-family models, as their embeddings do it themselves)."""
    batch, length = input_ids.shape
    first = _first_position(backbone)
    limit = backbone.config.max_position_embeddings
    if first + offset + length > limit:
        raise XtunerError(
            f"sequence length {length} + prompt length {offset} exceeds the model's {limit - first} positions; "
            "lower max_seq_length or psl"
        )
    emb = getattr(backbone, "embeddings", None)
    if first:
        return emb.create_position_ids_from_input_ids(input_ids, emb.padding_idx, offset)
    return torch.arange(offset, offset + length, device=input_ids.device).expand(batch, length)


def virtual_position_ids(
    backbone: PreTrainedModel, batch: int, psl: int, device: torch.device
) -> torch.Tensor:
    first = _first_position(backbone)
    return torch.arange(first, first + psl, device=device).expand(batch, psl)


def init_linear(layer: nn.Linear, std: float) -> nn.Linear:
    """HF BERT-style init: normal(0, initializer_range) weights, zero bias."""
    nn.init.normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)
    return layer


def _loss_kwargs(model: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = set(kwargs) - {"num_items_in_batch"}
    if unknown:
        raise TypeError(f"{type(model).__name__}.forward got unexpected arguments {sorted(unknown)}")
    return kwargs


class _PromptClassifier(nn.Module):
    """Shared by both classification heads: dropout then a linear layer on the prompt encoder's output."""

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.backbone.config
        self.config.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.classifier = init_linear(
            nn.Linear(self.config.hidden_size, num_labels), self.config.initializer_range
        )


class PromptForSequenceClassification(_PromptClassifier):
    """The frozen pretrained pooler, then dropout, then a linear layer (P-tuning v2 / MPT)."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        _, pooled = self.encoder(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = LOSS_MAPPING["ForSequenceClassification"](
                labels, logits, self.config, **_loss_kwargs(self, kwargs)
            )
        return SequenceClassifierOutput(loss=loss, logits=logits)


class PromptForTokenClassification(_PromptClassifier):
    """Dropout, then a linear layer on every token state."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> TokenClassifierOutput:
        sequence, _ = self.encoder(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(sequence))
        loss = None
        if labels is not None:
            loss = LOSS_MAPPING["ForTokenClassification"](
                logits, labels, self.config, **_loss_kwargs(self, kwargs)
            )
        return TokenClassifierOutput(loss=loss, logits=logits)


class PromptForQuestionAnswering(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.backbone.config
        self.config.num_labels = 2
        self.qa_outputs = init_linear(nn.Linear(self.config.hidden_size, 2), self.config.initializer_range)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> QuestionAnsweringModelOutput:
        sequence, _ = self.encoder(input_ids, attention_mask, token_type_ids)
        start_logits, end_logits = self.qa_outputs(sequence).split(1, dim=-1)
        start_logits, end_logits = start_logits.squeeze(-1).contiguous(), end_logits.squeeze(-1).contiguous()
        loss = LOSS_MAPPING["ForQuestionAnswering"](
            start_logits, end_logits, start_positions, end_positions, **_loss_kwargs(self, kwargs)
        )
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits)


def with_head(encoder: nn.Module, request: BuildRequest) -> nn.Module:
    """Put the task head of `request.head` on a prompt encoder (a retrieval task has none: the encoder itself)."""
    if request.head == HeadType.RETRIEVAL:
        return encoder
    if request.head == HeadType.SEQUENCE_CLASSIFICATION:
        return PromptForSequenceClassification(encoder, request.num_labels, request.head_dropout())
    if request.head == HeadType.TOKEN_CLASSIFICATION:
        return PromptForTokenClassification(encoder, request.num_labels, request.head_dropout())
    return PromptForQuestionAnswering(encoder)
