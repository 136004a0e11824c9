"""The settings the prompt methods (deep_prompt, soft_prompt) share; torch-free, so that a sweep validates without
loading the model code (``_prompt``)."""

from __future__ import annotations

from pydantic import Field

from xtuner.methods._base import MethodSettings


class PromptSettings(MethodSettings):
    psl: int = Field(
        16, gt=0, description="prompt length: number of virtual tokens / prefix vectors per layer"
    )
    prefix_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the prompt/prefix vectors")
    prefix_projection: bool = Field(False, description="reparameterise the prompt through a 2-layer tanh MLP")
    prefix_hidden_size: int = Field(512, gt=0, description="hidden size of that MLP")
    backbone_dropout: float | None = Field(
        None, ge=0, lt=1,
        description="hidden dropout inside the frozen backbone (and the head); None keeps the model's own",
    )  # fmt: skip

    def position_offset(self) -> int:
        return self.psl  # the prompt's virtual tokens take the first psl positions, the input's are shifted by psl
