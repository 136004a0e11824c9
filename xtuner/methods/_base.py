"""The method record, the settings base model, the build request and the built-model result.

A tuning method is composition, not subclassing: a name, a pydantic settings model (``extra="forbid"``, so a
setting that belongs to another method is an error) and a ``build(request, settings) -> nn.Module`` function.
Every method loads its backbone through ``AutoConfig``/``AutoModel*.from_pretrained(path)``, so hub ids and local
directories take the same path; :func:`load_config` checks the path first and turns loading failures into an
:class:`XtunerError` that names the path.

This module, the method modules (``finetune.py``, ``deep_prompt.py``, ...) and their settings import neither torch
nor transformers nor peft: validating a sweep (every method setting of every trial) needs only pydantic. The model
code lives in private modules (``_deep_prompt_model.py``, ...) that a method's ``build`` imports when it runs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from xtuner.errors import XtunerError
from xtuner.tasks.base import HeadType

if TYPE_CHECKING:  # torch and transformers load only when a model is built: validating a sweep needs neither
    import torch
    from transformers import PretrainedConfig, PreTrainedModel


class MethodSettings(BaseModel):
    """Base of every method's settings: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # finite numbers only

    def position_offset(self) -> int:
        """Positions the method puts before the input tokens (prompt methods: ``psl``), which the input must leave
        free among the model's positions: ``max_seq_length + position_offset()`` must fit."""
        return 0


@dataclass(frozen=True)
class BuildRequest:
    """What every method needs to build a model; `config` is the backbone's AutoConfig, already loaded."""

    model_path: str
    head: HeadType
    num_labels: int
    config: PretrainedConfig
    trust_remote_code: bool = False
    classifier_dropout: float | None = None

    def head_dropout(self) -> float:
        """Dropout before the task head: explicit value, else the config's classifier/hidden dropout (HF rule)."""
        if self.classifier_dropout is not None:
            return self.classifier_dropout
        value = getattr(self.config, "classifier_dropout", None)
        return value if value is not None else getattr(self.config, "hidden_dropout_prob", 0.1)


BuildFn = Callable[[BuildRequest, MethodSettings], "torch.nn.Module"]


@dataclass(frozen=True)
class Method:
    name: str
    settings: type[MethodSettings]
    build: BuildFn
    description: str = ""
    default_lr: float = 1e-4  # the learning rate `xtuner trial` uses when neither --lr nor a protocol gives one

    def setting_names(self) -> list[str]:
        return sorted(self.settings.model_fields)


@dataclass
class BuiltModel:
    """A model ready for training: ``forward(input_ids, attention_mask, labels | start/end_positions, ...)``
    returns a transformers ModelOutput whose logits cover exactly the input positions."""

    model: torch.nn.Module
    trainable_params: int
    total_params: int
    method: str

    @classmethod
    def wrap(cls, model: torch.nn.Module, method: str) -> BuiltModel:
        params = list(model.parameters())
        return cls(
            model=model,
            trainable_params=sum(p.numel() for p in params if p.requires_grad),
            total_params=sum(p.numel() for p in params),
            method=method,
        )

    def trainable_names(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the trainable tensors (a few MB for prompt methods), detached and on the CPU."""
        return {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load tensors saved by :meth:`trainable_state_dict`; the key sets must match exactly."""
        expected = set(self.trainable_names())
        missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
        if missing or unexpected:
            raise XtunerError(
                f"checkpoint does not fit this {self.method!r} model: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        self.model.load_state_dict(state_dict, strict=False)


def load_config(model_path: str, *, trust_remote_code: bool = False) -> PretrainedConfig:
    """AutoConfig of `model_path` (local dir or hub id); a path that is neither raises XtunerError."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id
    from transformers import AutoConfig

    if not Path(model_path).expanduser().exists():
        try:
            validate_repo_id(model_path)
        except HFValidationError:
            raise XtunerError(
                f"model {model_path!r} not found: it is not an existing local directory and not a valid "
                "Hugging Face hub id (like 'FacebookAI/xlm-roberta-large')"
            ) from None
    try:
        return AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise XtunerError(f"cannot load model {model_path!r}: {e}") from None


def load_task_model(request: BuildRequest) -> PreTrainedModel:
    """The stock transformers head model for `request.head` (AutoModelFor*; the bare AutoModel for a retrieval
    task, which has no head), all parameters trainable."""
    from transformers import (
        AutoModel,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    auto = {
        HeadType.SEQUENCE_CLASSIFICATION: AutoModelForSequenceClassification,
        HeadType.TOKEN_CLASSIFICATION: AutoModelForTokenClassification,
        HeadType.EXTRACTIVE_QA: AutoModelForQuestionAnswering,
        HeadType.RETRIEVAL: AutoModel,
    }[request.head]
    overrides: dict[str, object] = {
        "num_labels": 2 if request.head == HeadType.EXTRACTIVE_QA else request.num_labels
    }
    if request.classifier_dropout is not None:
        overrides["classifier_dropout"] = request.classifier_dropout
    config = copy.deepcopy(request.config)
    for key, value in overrides.items():
        setattr(config, key, value)
    try:
        return auto.from_pretrained(
            request.model_path, config=config, trust_remote_code=request.trust_remote_code
        )
    except (OSError, ValueError) as e:
        raise XtunerError(f"cannot load model {request.model_path!r}: {e}") from None
