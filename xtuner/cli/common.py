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


def output_folder(path, option: str = "--out", *, create: bool = True):
    """`path`, a folder for a command's output files: with `create`, made and proved writable; without, only
    checked (nothing is made: a command that fails later leaves no empty folder). Else one XtunerError naming
    `option` and the reason (a file of that name or in its path, a read-only parent). The check runs before the
    work when the user gave the folder, so a slow analysis does not end in a traceback."""
    import os
    from pathlib import Path

    from xtuner.paths import folder_problem
    from xtuner.sweep.checks import check_writable_dir

    folder = Path(path).expanduser()
    problem = folder_problem(folder)
    if problem:
        raise XtunerError(f"{option} {str(folder)!r} {problem}")
    if create:
        check_writable_dir(folder, what=option)
    else:
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            raise XtunerError(f"{option} {str(folder)!r}: {str(existing)!r} is not writable")
    return folder
