"""Stage-1 results, shared: ``<root>/<key>/`` holds ``encoder/`` (the intermediate-tuned encoder and its tokenizer)
and ``stage1.json`` (what made it and how it did), where ``<key>`` is the content address of everything that
determines stage 1 (`xtuner.intermediate.stage1.stage1_key`). The root is the sweep storage's ``intermediate/``
folder, so every trial of every sweep in that storage that needs the same stage 1 reuses it.

One training per key, never a half-written result used:

- **Local and shared file systems**: a trial that finds no result takes an OS lock on ``<root>/<key>.lock``
  (`fcntl.flock`, blocking: other trials of the same key *wait* on it; the kernel releases it however its holder
  ends). Holding it, it looks again (a trial it waited for may have finished), else trains, writes the result into
  a temp folder beside the target (``.<key>-tmp...``) and renames it to ``<key>`` in one step, ``stage1.json``
  already inside. A killed stage 1 leaves only a temp folder (removed by the next holder of the lock), never a
  ``<key>`` folder.
- **Object stores** (``s3://``, ``gs://``, pyarrow's file systems): no locks and no renames. The lock is a lease
  (`xtuner.sweep.lock.DriverLock` on ``<root>/<key>.lock/``, renewed by a heartbeat, taken over when stale) that a
  trial retries until it gets it; the encoder files are uploaded first and ``stage1.json`` LAST, so a folder
  without it is a killed upload: the next holder deletes it and trains again. Trials use a local copy of the
  encoder (``<cache>/intermediate/<key>/``, itself published by a rename).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xtuner.errors import XtunerError
from xtuner.sweep.state import exists, is_remote, join, read_text, remove_tree

DONE = "stage1.json"
ENCODER = "encoder"
POLL_S = 1.0


class Stage1Store:
    def __init__(self, root: str, key: str) -> None:
        self.root, self.key = str(root), key
        self.remote = is_remote(self.root)
        self.folder = join(self.root, key)

    # ------------------------------------------------------------------------------------------ reading
    def done(self) -> bool:
        return exists(join(self.folder, DONE))

    def meta(self) -> dict[str, Any]:
        try:
            return json.loads(read_text(join(self.folder, DONE)))
        except (OSError, ValueError) as e:
            raise XtunerError(f"{join(self.folder, DONE)}: unreadable stage-1 record ({e})") from None

    def local_encoder(self, cache: Path) -> str:
        """A local folder of the finished encoder (downloaded once per node from an object store)."""
        if not self.remote:
            return join(self.folder, ENCODER)
        target = cache / "intermediate" / self.key
        if (target / DONE).is_file():
            return str(target / ENCODER)
        import pyarrow.fs as pafs

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.key}-", dir=target.parent))
        try:
            (tmp / ENCODER).mkdir()  # pyarrow copies a folder's files into an existing local folder
            pafs.copy_files(join(self.folder, ENCODER), str(tmp / ENCODER))
            pafs.copy_files(join(self.folder, DONE), str(tmp / DONE))
            try:
                tmp.rename(target)
            except OSError as e:  # another trial on this node got there first
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return str(target / ENCODER)

    # ------------------------------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Held while one trial checks for, trains and publishes this key; the others wait here."""
        if self.remote:
            with self._lease():
                yield
            return
        import fcntl

        root = Path(self.root).expanduser()
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(root / f"{self.key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise XtunerError(f"cannot create the stage-1 lock in {root}: {e.strerror or e}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # blocks while another trial trains this key
            except OSError as e:
                raise XtunerError(f"cannot lock {root / (self.key + '.lock')} ({e.strerror or e}): the storage's "
                                  "file system does not support locks") from None  # fmt: skip
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextlib.contextmanager
    def _lease(self) -> Iterator[None]:
        from xtuner.sweep.lock import DriverLock

        lease = DriverLock(join(self.root, f"{self.key}.lock"), f"stage 1 of {self.key}")
        while True:
            try:
                lease.acquire()
                break
            except XtunerError as e:
                if "is in use by" not in str(e):
                    raise
                time.sleep(POLL_S * 5)
        try:
            yield
        finally:
            lease.release()

    def discard_partial(self) -> None:
        """Remove what a killed stage 1 of this key left (call while holding the lock)."""
        if self.remote:
            if exists(self.folder) and not self.done():
                remove_tree(self.folder)
            return
        root = Path(self.root).expanduser()
        for stale in root.glob(f".{self.key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        folder = Path(self.folder)
        if folder.exists() and not (folder / DONE).is_file():
            shutil.rmtree(folder, ignore_errors=True)

    def staging_dir(self) -> Path:
        """A new folder to write a result into: beside the target (local: published by a rename, no copy), else a
        local temp folder (uploaded)."""
        root = Path(tempfile.gettempdir()) if self.remote else Path(self.root).expanduser()
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{self.key}-", dir=root))

    def publish(self, staged: Path) -> None:
        """Make `staged` (holding ``encoder/`` and ``stage1.json``) the result of this key, whole or not at all."""
        if not (staged / DONE).is_file() or not (staged / ENCODER).is_dir():
            raise XtunerError(f"{staged}: not a finished stage-1 folder")
        if self.remote:
            import pyarrow.fs as pafs

            pafs.copy_files(str(staged / ENCODER), join(self.folder, ENCODER))
            pafs.copy_files(str(staged / DONE), join(self.folder, DONE))  # last: marks the result complete
            return
        root = Path(self.root).expanduser()
        tmp = staged
        if staged.parent.resolve() != root.resolve():
            tmp = Path(tempfile.mkdtemp(prefix=f".{self.key}-", dir=root))
            shutil.copytree(staged, tmp, dirs_exist_ok=True)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp made it private; a stage-1 result is as readable as its storage
        tmp.rename(self.folder)
