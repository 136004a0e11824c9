"""Identity of raw data files, for cache keys that cannot collide.

A data key names the files a split actually reads by their resolved real path (symlinks followed) and their
content (sha256), so two data folders whose task folders are symlinks to different places, an edited file, a file
replaced by one of the same size (even with its old mtime put back) and a moved folder all get new keys.

Hashing costs about 0.2-0.5 s per 100 MB on a loaded CPU; a digest is remembered in this process under the file's
(device, inode, size, mtime, ctime), but only when the file was last changed more than `RACY_S` seconds before it
was hashed (git's "racy clean" rule): a write in the same clock tick as the hash can keep mtime and ctime, so such
a digest is recomputed next time. Any later write moves ctime, which no user call can set back.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from pathlib import Path

RACY_S = 2.0
_DIGESTS: dict[tuple[str, int, int, int, int, int], str] = {}


def real_files(paths: Iterable[Path | str]) -> list[Path]:
    """Every regular file of `paths` (folders walked, symlinked folders followed, cycles visited once) as
    resolved real paths, sorted and without duplicates. Missing paths are skipped."""
    found: set[Path] = set()
    for path in paths:
        real = Path(os.path.realpath(path))
        if real.is_file():
            found.add(real)
        elif real.is_dir():
            seen: set[Path] = set()
            for folder, dirs, files in os.walk(real, followlinks=True):
                here = Path(os.path.realpath(folder))
                if here in seen:  # a symlink cycle, or two links to one folder
                    dirs[:] = []
                    continue
                seen.add(here)
                for name in files:
                    target = Path(os.path.realpath(Path(folder) / name))
                    if target.is_file():
                        found.add(target)
    return sorted(found)


def file_digest(path: Path | str) -> str:
    """sha256 of the file's content (remembered per process while the file is unchanged; see module doc)."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        started = time.time_ns()
        with open(real, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if started - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_S * 1e9:
            _DIGESTS[key] = digest
    return digest


def file_identity(path: Path | str) -> str:
    """``<real path>|<size>|<sha256>`` of one file."""
    real = os.path.realpath(path)
    return f"{real}|{os.stat(real).st_size}|{file_digest(real)}"


def path_fingerprint(*paths: Path | str) -> str:
    """One digest over the identity of every file of `paths` (see `real_files`): real paths and contents."""
    h = hashlib.sha256()
    for path in paths:  # the roots too, so that two empty or missing folders differ
        h.update(f"root:{os.path.realpath(path)}\n".encode())
    for real in real_files(paths):
        h.update(file_identity(real).encode())
        h.update(b"\n")
    return h.hexdigest()[:20]
