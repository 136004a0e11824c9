"""Arms: several entries of one tuning method side by side in a sweep, e.g. fine-tuning under two protocols.

A key of ``methods:`` is an *arm*. It is a registered method's name (``finetune: {...}``), or any other name whose
block says which method it runs (``finetune-xtreme: {method: finetune, protocol: xtreme}``). The sweep treats arms
as methods: each has its own groups, ASHA buckets, resources (``resources.methods.<arm>``, else
``resources.methods.<method>``), rows in the tables and the MLflow tag ``xtuner.method``; the trial itself runs the
registered method, so its params say ``method: finetune`` and ``protocol: xtreme``.

Protocols (``xtuner.protocols``) are resolved here for the plan, so the dry run, the GPU-hours estimate and the
MLflow params all show the settings a trial really runs with.
"""

from __future__ import annotations

from typing import Any

from xtuner.errors import XtunerError
from xtuner.sweep.spec import SweepSpec

ARM_KEY = "method"  # the one key of a method block that is not a setting


def base_method(spec: SweepSpec, arm: str) -> str:
    """The registered method an arm runs (the arm's own name unless its block says ``method: NAME``)."""
    from xtuner.methods import method_names

    block = spec.methods.get(arm) or {}
    name = block.get(ARM_KEY, arm)
    if not isinstance(name, str):
        raise spec.error(["methods", arm, ARM_KEY], f"the method an arm runs is one name, got {name!r}")
    if name not in method_names():
        from xtuner.errors import unknown_name

        where = ["methods", arm, ARM_KEY] if ARM_KEY in block else ["methods", arm]
        hint = "" if ARM_KEY in block else "; an arm with another name says which method it runs: {method: NAME}"
        raise spec.error(where, str(unknown_name("method", name, method_names())) + hint)
    return name


def arm_resources(spec: SweepSpec, arm: str) -> tuple[float, float]:
    r = spec.resources.methods
    chosen = r.get(arm) or r.get(base_method(spec, arm)) or spec.resources
    return chosen.cpu, chosen.gpu


def check_resource_keys(spec: SweepSpec) -> None:
    valid = set(spec.methods) | {base_method(spec, m) for m in spec.methods}
    for m in spec.resources.methods:
        if m not in valid:
            raise spec.error(["resources", "methods", m],
                             f"method {m!r} is not in methods: ({', '.join(spec.methods)})")  # fmt: skip


def resolved(flat: dict[str, Any]) -> dict[str, Any]:
    """The flat config with its protocol resolved (`xtuner.protocols.resolve`)."""
    from xtuner.protocols import resolve

    return resolve(flat)


def resolve_or_spec_error(spec: SweepSpec, origin: dict[str, list[str]], flat: dict[str, Any]) -> dict[str, Any]:
    """`resolved(flat)`, with a protocol problem reported at the spec path that set the protocol."""
    try:
        return resolved(flat)
    except XtunerError as e:
        raise spec.error(origin.get("protocol", ["methods"]), str(e)) from None
