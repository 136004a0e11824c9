"""lora: LoRA through peft as it is (``LoraConfig`` + ``get_peft_model``) on the stock transformers head model.

The task head (every top-level child of the head model that has parameters and is not the backbone, e.g.
``classifier`` or ``qa_outputs``) trains in full through ``modules_to_save``; the backbone trains only through
the low-rank adapters on ``target_modules``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from xtuner.errors import XtunerError
from xtuner.methods import register_method
from xtuner.methods._base import BuildRequest, Method, MethodSettings, load_task_model
from xtuner.tasks.base import HeadType

if TYPE_CHECKING:  # peft and torch load when a model is built, not when a sweep is validated
    from torch import nn

TASK_TYPES = {  # peft.TaskType values
    HeadType.SEQUENCE_CLASSIFICATION: "SEQ_CLS",
    HeadType.TOKEN_CLASSIFICATION: "TOKEN_CLS",
    HeadType.EXTRACTIVE_QA: "QUESTION_ANS",
    HeadType.RETRIEVAL: "FEATURE_EXTRACTION",
}


class LoraSettings(MethodSettings):
    r: int = Field(8, gt=0, description="rank of the update matrices")
    alpha: float = Field(16, gt=0, description="LoRA scaling numerator (lora_alpha)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the LoRA input")
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "value"], min_length=1, description="module names to adapt"
    )


def head_modules(model: nn.Module) -> list[str]:
    """Top-level children with parameters, other than the backbone (``base_model_prefix``)."""
    backbone = getattr(model, "base_model_prefix", "")
    return [
        name
        for name, child in model.named_children()
        if name != backbone and any(True for _ in child.parameters())
    ]


def build(request: BuildRequest, settings: LoraSettings) -> nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    model = load_task_model(request)
    config = LoraConfig(
        task_type=TaskType(TASK_TYPES[request.head]),
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        modules_to_save=head_modules(model) if request.head != HeadType.RETRIEVAL else None,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as e:
        raise XtunerError(f"method 'lora' on {request.model_path!r}: {e}") from None


register_method(
    Method(
        name="lora",
        settings=LoraSettings,
        build=build,
        description="LoRA adapters (peft) on the attention projections, task head trained in full",
        default_lr=1e-3,
    )
)
