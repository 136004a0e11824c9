"""The driver's MLflow writer thread: every MLflow write of a running sweep goes through one bounded queue, so a slow,
stopped or dead tracking server never holds up Tune's loop, and so never delays a trial.

- `submit(job, what)` queues a callable that writes to MLflow and returns at once. One thread runs the jobs, one at
  a time, in the order they were submitted, so the writes of a run keep their order (the run is created before its
  metrics are logged). A job reads what it needs when it runs (e.g. ``rec.run_id``, set by an earlier job).
- `submit_artifact(run_id, path, artifact_path)` copies the file or folder into a spool folder *now* (text files
  passed through `xtuner.cluster.redact.redact_text`), so the caller may delete or change its source at once; the
  job uploads the copy and removes it. `submit_text` does the same for a string. ``run_id`` may be a callable, read
  when the job runs (a child run created by an earlier job).
- The sweep state file is the source of truth. The first job that fails (an exception; HTTP requests time out after
  `HTTP_TIMEOUT_S` with `HTTP_RETRIES` retry, see `short_http_timeouts`) switches the writer *down*: it prints one
  warning, drops the queued jobs and those submitted while down, and probes the server every `PROBE_S` seconds
  (backing off to `PROBE_MAX_S` while a backfill keeps failing). A full queue (a server that answers, but too
  slowly) does the same. When the server answers again, the writer takes a snapshot of the state, takes jobs again
  from that instant on, and writes what MLflow lacks up to the snapshot (`backfill`: the comparison-based pass of
  `xtuner sweep sync`), so nothing is written twice and nothing is missed. Jobs submitted with ``replay=True``
  (idempotent writes such as artifact uploads, whose content is not in the state file) are kept while down, at most
  `MAX_KEPT`, and run after the backfill.
- `close(timeout)` waits at most `timeout` seconds for the queue to drain (when down: for one more probe and
  backfill), then stops the thread; what is still unwritten stays pending in the state file for `xtuner sweep sync`.

The queue holds at most `MAX_QUEUED` jobs. Other writers (per-example predictions, plots, reports) use the same
`submit` / `submit_artifact` from `xtuner.sweep.events.SweepEvents.tracker`.
"""

from __future__ import annotations

import os
import queue
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_QUEUED = 2000
MAX_KEPT = 1000
PROBE_S = 2.0
PROBE_MAX_S = 60.0
HTTP_TIMEOUT_S = 10
HTTP_RETRIES = 1
TEXT_SUFFIXES = (".txt", ".md", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".html", ".log")


def short_http_timeouts() -> None:
    """MLflow's REST client defaults to a 120 s timeout and 7 retries with exponential backoff (minutes on a dead
    server). The driver uses `HTTP_TIMEOUT_S` and `HTTP_RETRIES` unless the user set MLFLOW_HTTP_REQUEST_TIMEOUT /
    MLFLOW_HTTP_REQUEST_MAX_RETRIES / MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR (read by MLflow at each request)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(HTTP_TIMEOUT_S))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(HTTP_RETRIES))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


@dataclass
class Job:
    fn: Callable[[], Any]
    what: str
    persist: bool = False  # the job changed the state (a run id): save it afterwards
    replay: bool = False  # idempotent: keep it while the server is down and run it after the backfill
    spool: list[Path] = field(default_factory=list)  # copies this job owns

    def discard(self) -> None:
        for p in self.spool:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


class TrackingQueue:
    """See the module doc. `probe()` raises when the server does not answer; `snapshot()` copies the state (called
    under `lock`); `backfill(snapshot)` writes what MLflow lacks up to it and returns a summary; `persist()` saves
    the state; `lock` is the lock under which the caller changes the state and submits jobs."""

    def __init__(self, uri: str, *, lock: threading.RLock, probe: Callable[[], None],
                 snapshot: Callable[[], Any], backfill: Callable[[Any], str], persist: Callable[[], None],
                 state_path: str, sync_hint: str, max_queued: int = MAX_QUEUED) -> None:  # fmt: skip
        self.uri, self.lock = uri, lock
        self._probe, self._snapshot, self._backfill, self._persist = probe, snapshot, backfill, persist
        self.state_path, self.sync_hint = state_path, sync_hint
        self._q: queue.Queue[Job | None] = queue.Queue(maxsize=max_queued)
        self._kept: list[Job] = []
        self._down: str | None = None  # why the writer is down (None: up)
        self._overflow = False
        self._closing = threading.Event()  # close(): drain, or one last probe when down, then stop
        self._wake = threading.Event()
        self._probed_ok = False
        self.outages = 0
        self.backfills: list[str] = []
        self._spool = Path(tempfile.mkdtemp(prefix="xtuner-mlflow-spool-"))
        self._thread = threading.Thread(target=self._run, name="xtuner-mlflow-writer", daemon=True)
        self._thread.start()

    @property
    def down(self) -> bool:
        return self._down is not None

    # ------------------------------------------------------------------------------------------ submitting
    def submit(self, fn: Callable[[], Any], what: str, *, persist: bool = False, replay: bool = False) -> None:
        self._add(Job(fn, what, persist, replay))

    def submit_text(self, run_id: str | Callable[[], str | None], text: str, artifact_file: str) -> None:
        """Upload `text` as `artifact_file` (redacted; the text is held until the job runs)."""
        from xtuner.cluster.redact import redact_text

        path = Path(tempfile.mkdtemp(dir=self._spool)) / Path(artifact_file).name
        path.write_text(redact_text(text))
        folder = str(Path(artifact_file).parent) if "/" in artifact_file else None
        self._add(Job(lambda: self._upload(run_id, path, folder), f"artifact {artifact_file}", replay=True,
                      spool=[path.parent]))  # fmt: skip

    def submit_artifact(self, run_id: str | Callable[[], str | None], local_path: str | Path,
                        artifact_path: str | None = None) -> None:  # fmt: skip
        """Upload a file or folder (copied now; text files redacted) under `artifact_path` of the run."""
        src = Path(local_path)
        holder = Path(tempfile.mkdtemp(dir=self._spool))
        copy = holder / src.name
        if src.is_dir():
            shutil.copytree(src, copy, symlinks=False)
            for f in copy.rglob("*"):
                _redact_file(f)
        else:
            shutil.copy2(src, copy)
            _redact_file(copy)
        self._add(Job(lambda: self._upload(run_id, copy, artifact_path), f"artifact {src.name}", replay=True,
                      spool=[holder]))  # fmt: skip

    def _upload(self, run_id: str | Callable[[], str | None], path: Path, artifact_path: str | None) -> None:
        from mlflow.tracking import MlflowClient

        rid = run_id() if callable(run_id) else run_id
        if not rid:
            raise RuntimeError(f"no MLflow run yet for artifact {path.name}")
        client = MlflowClient(tracking_uri=self.uri)
        if path.is_dir():
            client.log_artifacts(rid, str(path), artifact_path=f"{artifact_path}/{path.name}".strip("/")
                                 if artifact_path else path.name)  # fmt: skip
        else:
            client.log_artifact(rid, str(path), artifact_path=artifact_path)

    def _add(self, job: Job) -> None:
        if self._closing.is_set() and not self._thread.is_alive():
            job.discard()
            return
        if self.down:
            self._keep_or_drop(job)
            return
        try:
            self._q.put_nowait(job)
        except queue.Full:
            self._overflow = True
            self._keep_or_drop(job)

    def _keep_or_drop(self, job: Job) -> None:
        if job.replay and len(self._kept) < MAX_KEPT:
            self._kept.append(job)
        else:
            job.discard()

    # ------------------------------------------------------------------------------------------ the thread
    def _run(self) -> None:
        delay = PROBE_S
        while True:
            if self.down:
                self._wake.wait(delay)
                self._wake.clear()
                if self._try_recover():
                    delay = PROBE_S
                elif self._closing.is_set():
                    return
                else:
                    delay = min(delay * 2, PROBE_MAX_S) if self._probed_ok else PROBE_S
                continue
            try:
                job = self._q.get(timeout=0.2)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            if job is None:
                return
            try:
                job.fn()
                if job.persist:
                    with self.lock:
                        self._persist()
            except Exception as e:  # noqa: BLE001 - any failure: the server is slow or gone; the state has it
                self._go_down(f"{type(e).__name__}: {_first_line(e)}")
                self._keep_or_drop(job) if job.replay else job.discard()
                continue
            job.discard()
            if self._overflow:
                self._overflow = False
                self._go_down(f"more than {self._q.maxsize} writes waiting (the server is too slow)")

    def _go_down(self, reason: str) -> None:
        with self.lock:
            first = self._down is None
            self._down = reason
        while True:  # the queued writes are in the state file; the backfill writes them
            try:
                job = self._q.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._keep_or_drop(job)
        if first:
            self.outages += 1
            _say(f"warning: MLflow at {self.uri} is slow or unreachable ({reason[:300]}); the sweep goes on and "
                 f"keeps every result in {self.state_path}; they are written to MLflow when it answers again "
                 f"(or run `{self.sync_hint}`)")  # fmt: skip

    def _try_recover(self) -> bool:
        self._probed_ok = False
        try:
            self._probe()
        except Exception:  # noqa: BLE001 - still down
            return False
        self._probed_ok = True
        with self.lock:  # from this instant new jobs are queued; everything before is in the snapshot
            snap = self._snapshot()
            self._down = None
            kept, self._kept = self._kept, []
        try:
            summary = self._backfill(snap)
        except Exception as e:  # noqa: BLE001 - failed again: down, quietly (one warning per outage)
            with self.lock:
                self._down = f"{type(e).__name__}: {_first_line(e)}"
                self._kept = kept + self._kept
            self._drain_to_kept()
            return False
        for job in kept:
            try:
                self._q.put_nowait(job)
            except queue.Full:
                job.discard()
        self.backfills.append(summary)
        _say(f"MLflow at {self.uri} answers again: {summary}")
        return True

    def _drain_to_kept(self) -> None:
        while True:
            try:
                job = self._q.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._keep_or_drop(job)

    # ------------------------------------------------------------------------------------------ closing
    def close(self, timeout: float) -> bool:
        """Drain (or, when down, one more probe and backfill) for at most `timeout` seconds; True when nothing
        submitted is left unwritten."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout)
        ok = not self._thread.is_alive() and not self.down and self._q.empty()
        for job in self._kept:
            job.discard()
        self._kept = []
        shutil.rmtree(self._spool, ignore_errors=True)
        return ok


def _say(text: str) -> None:
    from xtuner.cluster.redact import redact_text

    print(redact_text(text), file=sys.stderr, flush=True)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""


def _redact_file(path: Path) -> None:
    """Text artifacts pass through the same redaction as everything else that leaves the driver."""
    from xtuner.cluster.redact import redact_text

    if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES:
        return
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError):
        return
    red = redact_text(text)
    if red != text:
        path.write_text(red)
