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
