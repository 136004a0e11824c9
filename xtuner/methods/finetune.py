"""finetune: full fine-tuning with the stock transformers head (AutoModelFor*), every parameter trains."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xtuner.methods import register_method
from xtuner.methods._base import BuildRequest, Method, MethodSettings, load_task_model

if TYPE_CHECKING:
    from torch import nn


class FinetuneSettings(MethodSettings):
    """No settings: full fine-tuning has no method-specific hyperparameters."""


def build(request: BuildRequest, settings: FinetuneSettings) -> nn.Module:
    return load_task_model(request)


register_method(
    Method(
        name="finetune",
        settings=FinetuneSettings,
        build=build,
        description="full fine-tuning with the standard transformers task head",
        default_lr=1e-4,
    )
)
