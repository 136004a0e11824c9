"""Where xtuner keeps its caches, and file checksums for verifying them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_root() -> Path:
    """$XTUNER_CACHE, else ~/.cache/xtuner (tokenised data under tokenized/, rebuilt models under models/)."""
    root = os.environ.get("XTUNER_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "xtuner"


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def folder_problem(path: str | Path) -> str | None:
    """Why `path` cannot be (or become) a folder, or None: it is a file, or a file stands where one of its parent
    folders should be (``afile/sub``: creating it fails with NotADirectoryError)."""
    p = Path(path).expanduser()
    if p.exists():
        return None if p.is_dir() else "is a file, not a folder"
    for parent in p.parents:
        if parent.exists():
            return None if parent.is_dir() else f"cannot be created: {str(parent)!r} is a file, not a folder"
    return None
