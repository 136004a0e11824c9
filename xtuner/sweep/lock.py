"""One driver per sweep: an exclusive lock in the sweep folder, ``<storage>/<name>/.xtuner_driver.lock``.

`run`, `resume` and `sync` hold it for as long as they write the sweep; a second one is refused with one XtunerError
that names the holder (host, pid, start time and what it is doing).

- **Local and shared file systems**: an OS lock (`fcntl.flock`) on the file, held by the open file for the driver's
  life. The kernel releases it when the process ends, however it ends (on NFS the client maps it to a POSIX lock that
  the server's lock manager releases when the client dies or its lease expires), so a killed driver never leaves a
  lock that blocks the next one. The file's content only names the holder; it is emptied on a clean release. A lock
  file that still names a holder when the lock is free belonged to a driver that died: it is taken over, and
  `taken_over` describes the dead holder for a message. The file is never deleted while in use (a deleted lock file
  would let a second driver lock a new file), so `--overwrite` keeps it (`remove_contents`).
- **Object stores** (``s3://``, ``gs://``) have no locks. The lock is a lease object (same name, same content plus a
  random token and a heartbeat time) that a daemon thread renews every `HEARTBEAT_S`. A lease whose heartbeat is
  older than `STALE_S`, or that names a process of this host which no longer runs, is taken over. Acquiring writes
  the lease, waits `SETTLE_S` and reads it back: of two drivers that both found no live lease, the one whose write
  came last keeps it and the other is refused. Two drivers can still both win if one takes longer than `SETTLE_S`
  between reading and writing the lease; a conditional write (S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``)
  would close that window, but pyarrow's filesystems, which Tune and xtuner use, do not expose it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from xtuner.errors import XtunerError

LOCK_FILE = ".xtuner_driver.lock"
HEARTBEAT_S = 30.0
STALE_S = 180.0
SETTLE_S = 2.0


def describe(holder: dict[str, Any]) -> str:
    """``sweep run (pid 123 on host h, started 2026-01-02 10:11:12)``."""
    started = holder.get("started")
    when = datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S") if isinstance(started, int | float) else "?"
    return (f"{holder.get('role') or 'a driver'} (pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
            f"started {when})")  # fmt: skip


class DriverLock:
    """``with DriverLock(sweep_dir, "sweep run"):`` (or `acquire` / `release`)."""

    def __init__(self, sweep_dir: str, role: str) -> None:
        from xtuner.sweep.state import is_remote, join

        self.sweep_dir, self.role = str(sweep_dir), role
        self.path = join(self.sweep_dir, LOCK_FILE)
        self.remote = is_remote(self.sweep_dir)
        self.taken_over: dict[str, Any] | None = None  # the dead holder whose lock this one took over
        self._fd: int | None = None
        self._token: str | None = None
        self._stop = threading.Event()
        self._info = {"role": role, "host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}

    def __enter__(self) -> DriverLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None or self._token is not None

    def acquire(self) -> None:
        if self.held:
            return
        if self.remote:
            self._acquire_lease()
        else:
            self._acquire_flock()

    def probe(self) -> None:
        """Refuse at once if another driver holds the lock (before slower pre-flight work); holds nothing."""
        if self.remote:
            lease = self._read_lease()
            if lease and not _stale(lease):
                raise self.refusal(lease)
            return
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return  # no lock file: nobody holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise self.refusal(_parse(_read_fd(fd))) from None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)  # a clean end: nothing to take over
            except OSError:
                pass
            finally:
                os.close(fd)  # closing the file releases the flock
        if self._token is not None:
            self._stop.set()
            try:
                if (self._read_lease() or {}).get("token") == self._token:
                    _remote_delete(self.path)
            except OSError:
                pass  # a lease that could not be removed goes stale
            self._token = None

    def refusal(self, holder: dict[str, Any] | None) -> XtunerError:
        who = describe(holder) if holder else "another driver (it has not written its details yet)"
        name = PurePosixPath(str(self.sweep_dir).rstrip("/")).name
        return XtunerError(f"sweep folder {self.sweep_dir} is in use by {who}; lock {self.path}. "
                           f"`xtuner sweep status {name}` shows its progress; to continue it after it was stopped, "
                           f"`xtuner sweep resume {name}`")  # fmt: skip

    # ------------------------------------------------------------------------------------------ local / shared FS
    def _acquire_flock(self) -> None:
        import fcntl

        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise XtunerError(f"cannot create the driver lock {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _parse(_read_fd(fd))
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise self.refusal(holder) from None
            raise XtunerError(f"cannot lock {self.path} ({e.strerror or e}); the storage's file system does not "
                              "support locks (an NFS mount without lock support?)") from None  # fmt: skip
        self.taken_over = _parse(_read_fd(fd))
        try:
            data = json.dumps(self._info).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            raise XtunerError(f"cannot write the driver lock {self.path}: {e.strerror or e}") from None
        self._fd = fd

    # ------------------------------------------------------------------------------------------ object stores
    def _acquire_lease(self) -> None:
        lease = self._read_lease()
        if lease and not _stale(lease):
            raise self.refusal(lease)
        token = uuid.uuid4().hex
        self._write_lease(token)
        time.sleep(SETTLE_S)
        back = self._read_lease()
        if not back or back.get("token") != token:
            raise self.refusal(back)
        self._token, self.taken_over = token, lease
        threading.Thread(target=self._heartbeat, name="xtuner-lease", daemon=True).start()

    def _write_lease(self, token: str) -> None:
        from xtuner.sweep.state import write_text

        write_text(self.path, json.dumps({**self._info, "token": token, "heartbeat": time.time()}))

    def _read_lease(self) -> dict[str, Any] | None:
        from xtuner.sweep.state import exists, read_text

        return _parse(read_text(self.path).encode()) if exists(self.path) else None

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            token = self._token
            try:
                if token is None or (self._read_lease() or {}).get("token") != token:
                    return  # released, or taken over after this process stalled past STALE_S
                self._write_lease(token)
            except OSError:
                continue  # the next beat tries again; a long outage lets the lease go stale


def remove_contents(sweep_dir: str) -> None:
    """Delete everything in the sweep folder except the driver lock (`--overwrite` while holding it)."""
    from xtuner.sweep.state import is_remote, join, list_names, remove_tree

    for name in list_names(sweep_dir):
        if name == LOCK_FILE:
            continue
        target = join(sweep_dir, name)
        if is_remote(target):
            if _remote_is_dir(target):
                remove_tree(target)
            else:
                _remote_delete(target)
        elif Path(target).is_dir() and not Path(target).is_symlink():
            remove_tree(target)
        else:
            Path(target).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ helpers
def _read_fd(fd: int) -> bytes:
    try:
        return os.pread(fd, 65536, 0)
    except OSError:
        return b""


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        holder = json.loads(data.decode()) if data.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


def _stale(lease: dict[str, Any]) -> bool:
    beat = lease.get("heartbeat")
    if not isinstance(beat, int | float) or time.time() - beat > STALE_S:
        return True
    if lease.get("host") == socket.gethostname() and isinstance(lease.get("pid"), int):
        import psutil

        return not psutil.pid_exists(lease["pid"])
    return False


def _remote_delete(uri: str) -> None:
    import pyarrow.fs as pafs

    fs, p = pafs.FileSystem.from_uri(uri)
    if fs.get_file_info(p).type == pafs.FileType.File:
        fs.delete_file(p)


def _remote_is_dir(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, p = pafs.FileSystem.from_uri(uri)
    return fs.get_file_info(p).type == pafs.FileType.Directory
