"""Helpers shared by several sub-commands."""

from __future__ import annotations

from xtuner.errors import XtunerError


def parse_set(items: list[str]) -> dict:
    """`key=value` pairs; values are parsed as YAML scalars (1e-3 -> float, true -> bool, [a, b] -> list)."""
    from xtuner.sweep.spec import load_yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise XtunerError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = load_yaml(value, f"--set {key.strip()}")
    return out
