"""Helpers shared by several sub-commands."""

from __future__ import annotations

from xtuner.errors import XtunerError


def parse_set(items: list[str]) -> dict:
    """`key=value` pairs; values are parsed as YAML scalars (1e-3 -> float, true -> bool, [a, b] -> list)."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise XtunerError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise XtunerError(f"--set {item!r}: cannot parse the value: {e}") from None
    return out
