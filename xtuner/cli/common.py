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


def output_folder(path, option: str = "--out"):
    """`path` (a folder for a command's output files) created and proved writable, else one XtunerError naming
    `option` and the reason (a file of that name, a read-only parent). Called before the work when the user gave
    the folder, so a slow analysis does not end in a traceback."""
    from pathlib import Path

    from xtuner.sweep.checks import check_writable_dir

    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise XtunerError(f"{option} {str(folder)!r} is a file, not a folder")
    check_writable_dir(folder, what=option)
    return folder
