"""Trial temp folders: ``<root>/xtuner-trial-<pid>-<owner>-<random>``, where root is ``$XTUNER_TMP`` (when set and
not empty) or the system temp folder.

run_trial's own output folder (the Trainer's checkpoints) and a sweep trial's checkpoint download from object
storage live there. A process that is killed (OOM, a preempted node, a test's SIGKILL) never removes its folders,
so each new trial first removes the STALE ones: same owner, and a pid that no longer runs. ``<owner>`` is a short
hash of the host name and the PID namespace, so a trial only judges folders of processes it can see. That matters
when containers share ``/tmp`` or nodes share ``XTUNER_TMP``, where pids say nothing about the other side. A pid
reused by an unrelated process keeps a stale folder alive (a leak, never a wrong delete).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

PREFIX = "xtuner-trial-"


def tmp_root() -> Path:
    return Path(os.environ.get("XTUNER_TMP") or tempfile.gettempdir())


@functools.cache
def owner_tag() -> str:
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha1(f"{socket.gethostname()}|{namespace}".encode()).hexdigest()[:8]


def make_dir(kind: str = "") -> Path:
    """A new temp folder owned by this process (``kind`` is part of the name, e.g. "resume")."""
    root = tmp_root()
    root.mkdir(parents=True, exist_ok=True)
    suffix = f"{kind}-" if kind else ""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{owner_tag()}-{suffix}", dir=root))


def remove_stale(root: Path | None = None) -> list[Path]:
    """Delete the temp folders of this owner whose process no longer runs; returns what was removed."""
    removed = []
    for folder in (root or tmp_root()).glob(f"{PREFIX}*-{owner_tag()}-*"):
        pid = folder.name.removeprefix(PREFIX).split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process, or not a pid at all: never delete on a doubt
        return True
    return True
