"""The stage-1 settings of an intermediate task, and what a variant trains on.

A sweep spec gives them per target task (``tasks.<task>.intermediate``); every trial of that task carries them in
its flat config as ``intermediate`` (one dict, logged as one MLflow param), and its variant as
``intermediate_variant`` (a sweep axis like ``lr``):

- ``none``: no stage 1; the trial is today's trial.
- ``en``: stage 1 on the intermediate task's English train set.
- ``multi``: stage 1 on the concatenation of `languages`' train sets (translated data where the task has it).

``budget``: ``match_en`` gives ``multi`` the number of examples ``en`` trains on, split evenly over its languages
(so a difference between the variants is not one of data size); ``all`` takes every language's whole train set.
``max_train_examples`` caps the English set (and so, under ``match_en``, the multilingual one).
``noise`` (0 <= p < 1) degrades the non-English training rows as machine translation would: each word is dropped
with probability p/2 and each pair of neighbouring words swapped with probability p/2 (`xtuner.intermediate.data`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

VARIANTS = ("none", "en", "multi")
Variant = Literal["none", "en", "multi"]
STAGE1_METHODS = ("finetune",)  # stage 1 changes the encoder itself (X-STILTs: full fine-tuning)


class IntermediateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    task: str = Field(description="the intermediate task (a registered task other than the target)")
    languages: list[str] | None = Field(
        None,
        min_length=1,
        description="languages of the multi variant; default: every language with train data",
    )
    budget: Literal["match_en", "all"] = "match_en"
    method: str = Field("finetune", description="the stage-1 method (X-STILTs: full fine-tuning)")
    lr: float = Field(1.0e-5, gt=0)
    epochs: float = Field(1, gt=0)
    batch_size: int = Field(32, ge=1)
    max_seq_length: int = Field(128, ge=16)
    max_train_examples: int | None = Field(None, ge=1, description="cap on the English train set")
    noise: float = Field(0.0, ge=0, lt=1, description="MT-like noise on the non-English rows")
    warmup_ratio: float = Field(0.0, ge=0, lt=1)

    def stage1_languages(self, variant: str, source: str, default: list[str]) -> list[str]:
        """The languages stage 1 trains on for `variant` (sorted); [] for none."""
        if variant == "none":
            return []
        if variant == "en":
            return [source]
        return sorted(self.languages or default)


def seen_languages(flat: dict[str, Any], source: str = "en") -> list[str]:
    """The languages a trial's stage 1 trained on, from its flat config / MLflow params (`intermediate` may be the
    JSON text MLflow keeps); [] without a stage 1. Resolves the default languages through the task registry."""
    import json

    variant = str(flat.get("intermediate_variant") or "none")
    raw = flat.get("intermediate")
    if variant == "none" or raw in (None, "", "None"):
        return []
    block = json.loads(raw) if isinstance(raw, str) else dict(raw)
    settings = IntermediateSettings.model_validate(block)
    if variant == "en":
        return [source]
    if settings.languages:
        return sorted(settings.languages)
    from xtuner.tasks import get_task

    return sorted(get_task(settings.task).train_languages)
