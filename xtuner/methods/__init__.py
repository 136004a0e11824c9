"""Tuning-method registry: ``finetune``, ``deep_prompt``, ``soft_prompt``, ``lora``, ...

Every public module of this package registers one method at import time with :func:`register_method`; modules
are discovered with ``pkgutil`` (private helpers start with ``_``), so adding a method is one new file. Methods
from outside the package register through the ``xtuner.methods`` entry-point group (a module to import).

A method is a record (:class:`Method`): a name, its own pydantic settings model (unknown settings are errors:
``psl`` is not a ``finetune`` setting) and a build function. :func:`build_model` is the one entry point that
validates settings, loads the backbone config (bad paths fail here, before any training) and builds.

Importing this package, listing the methods and validating settings import neither torch nor transformers nor peft
(see ``_base``); `build_model` and the encoder helpers (`backbone_of`, `encoder_hidden_states`) load them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from xtuner.errors import XtunerError
from xtuner.methods._base import BuildRequest, BuiltModel, Method, MethodSettings, load_config
from xtuner.registry import Registry
from xtuner.tasks.base import HeadType

METHODS: Registry[Method] = Registry("method", package=__name__, path=__path__, group="xtuner.methods")


def register_method(method: Method) -> Method:
    return METHODS.add(method.name, method)


def get_method(name: str) -> Method:
    return METHODS.get(name)


def method_names() -> list[str]:
    return METHODS.names()


def validate_settings(method: str, settings: dict[str, Any]) -> BaseModel:
    """The method's settings model built from `settings`; raises XtunerError naming the bad setting."""
    spec = get_method(method)
    valid = ", ".join(spec.setting_names()) or "(none)"
    try:
        return spec.settings(**settings)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            name = ".".join(str(p) for p in err["loc"]) or "(root)"
            if err["type"] == "extra_forbidden":
                problems.append(f"setting {name!r} is not valid for method {method!r}")
            else:
                problems.append(f"setting {name!r} of method {method!r}: {err['msg']}")
        raise XtunerError(f"{'; '.join(problems)}; valid settings of {method!r}: {valid}") from None


def build_model(
    model_path: str,
    head: HeadType,
    num_labels: int,
    method: str,
    settings: dict[str, Any],
    *,
    trust_remote_code: bool = False,
    classifier_dropout: float | None = None,
) -> BuiltModel:
    """Load `model_path` (local dir or hub id) and apply `method` with its `settings` for a `head` task."""
    spec = get_method(method)
    parsed = validate_settings(method, settings)
    head = HeadType(head)
    if head not in (HeadType.EXTRACTIVE_QA, HeadType.RETRIEVAL) and num_labels < 1:
        raise XtunerError(f"num_labels must be >= 1 for a {head} head, got {num_labels}")
    request = BuildRequest(
        model_path=str(model_path),
        head=head,
        num_labels=num_labels,
        config=load_config(str(model_path), trust_remote_code=trust_remote_code),
        trust_remote_code=trust_remote_code,
        classifier_dropout=classifier_dropout,
    )
    return BuiltModel.wrap(spec.build(request, parsed), method)


def __getattr__(name: str) -> Any:
    if name in ("backbone_of", "encoder_hidden_states"):  # torch: loaded on first use
        from xtuner.methods import _encode

        return getattr(_encode, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "METHODS",
    "BuildRequest",
    "BuiltModel",
    "Method",
    "MethodSettings",
    "backbone_of",
    "build_model",
    "encoder_hidden_states",
    "get_method",
    "method_names",
    "register_method",
    "validate_settings",
]
