"""What the driver does on each trial event (no Ray here; `xtuner.sweep.tune` forwards Tune's callbacks to it):
update the sweep state file, hand the MLflow writes to the writer thread, print one concise progress line.

- The state file is the source of truth, saved after every event. MLflow writes go through
  `xtuner.sweep.tracker.TrackingQueue` (`tracker`): Tune's loop never waits for the tracking server. When the server
  is slow or gone the writer says so once, and when it answers again it backfills from a snapshot of the state
  (`_backfill`, the comparison-based pass of `xtuner sweep sync`). `close_tracking` gives it a bounded time at the end
  and names what MLflow still lacks. Other MLflow writes (predictions, plots) use ``self.tracker.submit(...)`` /
  ``submit_artifact`` / ``submit_text`` under ``with self.lock`` like the methods here.
- The parent run is opened at the start, in a thread while Ray and Tune start (`prepare_tracking`, `open`); the
  writer thread's first job waits for it. A tracking URI that fails there is the sweep's one error (`check_fatal`
  raises it in Tune's loop as soon as it is known).
- A storage failure (a full disk) while writing the state stops the sweep: `storage_failed` records one XtunerError
  with the resume command (`fatal`); `xtuner.sweep.tune` stops Tune and raises it. Trials stopped that way stay
  ``running`` in the state, so `xtuner sweep resume` continues them.
- The object pickles as its sweep folder only (Tune pickles callbacks into ``tuner.pkl``, which must hold no secret;
  a resumed sweep makes a fresh one).
"""

from __future__ import annotations

import copy
import sys
import threading
import time
from typing import Any

from xtuner.cluster.redact import redact_text
from xtuner.errors import XtunerError
from xtuner.progress import fit_line, fmt_seconds, line_width
from xtuner.sweep.report import end_detail, fmt_params, summary_markdown
from xtuner.sweep.space import SweepPlan
from xtuner.sweep.state import FINISHED, STATE_FILE, SweepState, TrialRecord, exists, join
from xtuner.sweep.tracker import TrackingQueue, short_http_timeouts
from xtuner.sweep.tracking import MlflowWriter

FULL_DISK_TEXT = ("No space left on device", "Disk quota exceeded")

MAIN = "dev/en/main"  # every trial reports its task's main en-dev metric under this name too (ASHA, Optuna)
NONFINITE = "xt_nonfinite"  # result key set by the trainable when run_trial raised NonFiniteLossError
FINAL = "xt_final"  # result key of run_trial's last report (test metrics)
REPLAY = "xt_replay"  # a finished trial that Tune's (older) experiment state still thought unfinished
LOSSES = "train/losses"  # run_trial's training losses since its previous report: [[step, loss], ...]
KEPT = ("done", "pruned", "nonfinite")  # finished states a resume keeps (errors re-run only on request)


def replay_results(state: SweepState) -> dict[str, dict[str, Any]]:
    """Per finished trial, the result its trainable reports at once on a resume instead of training again (Tune
    saves its experiment state every ~10 s, so a driver killed right after a trial ended may restore it as
    unfinished)."""
    out: dict[str, dict[str, Any]] = {}
    for rec in state.trials.values():
        if rec.state == "done":
            out[rec.trial_id] = {
                **rec.final,
                FINAL: 1.0,
                **({MAIN: rec.best_dev} if rec.best_dev is not None else {}),
            }
        elif rec.state == "nonfinite":
            out[rec.trial_id] = {NONFINITE: 1.0}
        elif rec.state == "pruned":
            out[rec.trial_id] = {"xt_pruned": 1.0}
    return out


class SweepEvents:
    def __init__(
        self, plan: SweepPlan, sweep_dir: str, tracking_uri: str | None, quiet: bool = False,
        overwrite: bool = False,
    ) -> None:  # fmt: skip
        self.plan, self.sweep_dir, self.tracking_uri, self.quiet = plan, str(sweep_dir), tracking_uri, quiet
        self.overwrite = overwrite  # --overwrite: the earlier sweep's MLflow runs are deleted when the parent opens
        self._reset()

    def _reset(self) -> None:
        self.state: SweepState | None = None
        self.writer: MlflowWriter | None = None
        self.tracker: TrackingQueue | None = None
        self.lock = threading.RLock()  # the state and the submitted jobs change together (see TrackingQueue)
        self.fatal: XtunerError | None = None  # a storage failure that ends the sweep
        self._replaying: set[str] = set()
        self._parent_thread: threading.Thread | None = None  # opens the MLflow parent run (`prepare_tracking`)
        self._parent_go = threading.Event()  # set by `open`: the state is there
        self._parent_cancelled = False
        self._parent_error: XtunerError | None = None
        self._opened: MlflowWriter | None = None  # the writer once the parent run is open

    def __getstate__(self) -> dict[str, Any]:
        return {"sweep_dir": redact_text(self.sweep_dir)}  # no spec, no tracking URI: tuner.pkl holds no secret

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(plan=None, tracking_uri=None, quiet=True, overwrite=False, **d)  # unusable: resume
        # makes a fresh one
        self._reset()

    @property
    def path(self) -> str:
        return join(self.sweep_dir, STATE_FILE)

    # ------------------------------------------------------------------------------------------ lifecycle
    def open(self, *, background: bool = False) -> None:
        """Load or create the state; with tracking, open the MLflow parent run and start the writer thread.
        `background`: do not wait for the parent run: a thread opens it while Tune starts (importing MLflow and, on
        a fresh sqlite database, creating its tables take seconds), and the writer thread's first job waits for it
        (`writer` stands for the MlflowWriter until then). Its failure is the sweep's one error: `check_fatal`
        raises it in Tune's loop, `parent_ready` at the end."""
        if self.state is not None:
            return
        spec = self.plan.spec
        if exists(self.path):
            self.state = SweepState.load(self.path)
        else:
            self.state = SweepState(spec.name, spec.model_dump(mode="json"))
        if self.tracking_uri:
            self.state.tracking_uri = self.tracking_uri
            self.prepare_tracking()
            self._parent_go.set()
            if background:
                self.writer = _OpeningWriter(self)  # type: ignore[assignment]
            else:
                try:
                    self.parent_ready()
                except XtunerError:
                    self.state = None
                    raise
            self.tracker = TrackingQueue(
                self.tracking_uri, lock=self.lock, probe=self._probe, snapshot=self._snapshot,
                backfill=self._backfill, persist=self.save, state_path=self.path,
                sync_hint=f"xtuner sweep sync {self.sweep_dir}",
            )  # fmt: skip
        self.save()

    def prepare_tracking(self) -> None:
        """Start the thread that imports MLflow and opens its store (a fresh sqlite database gets its tables) now,
        before Ray starts; it opens the parent run once `open` has the state. Idempotent; nothing without tracking."""
        if not self.tracking_uri or self._parent_thread is not None:
            return
        short_http_timeouts()
        self._parent_thread = threading.Thread(target=self._open_parent, name="xtuner-mlflow-parent", daemon=True)
        self._parent_thread.start()

    def _open_parent(self) -> None:
        assert self.tracking_uri
        try:
            writer = MlflowWriter(self.tracking_uri, self.plan.spec.experiment)
            writer.client.search_experiments(max_results=1)  # the store: a fresh sqlite database's tables
            self._parent_go.wait()
            if self.state is None or self._parent_cancelled:
                return
            writer.open_parent(self.state, self.state.spec, self.sweep_dir, replace=self.overwrite)
            self._opened = writer
            if writer.replaced and not self.quiet:
                print(f"--overwrite: deleted the {writer.replaced} MLflow runs of the earlier sweep "
                      f"{self.state.name!r} (restorable until `mlflow gc`)", file=sys.stderr, flush=True)  # fmt: skip
            if self.tracker is not None:  # opened in the background: keep the run ids
                self.save()
        except Exception as e:  # noqa: BLE001 - any MLflow failure here is the user's setup
            self._parent_error = XtunerError(f"MLflow tracking at {self.tracking_uri}: {type(e).__name__}: {e}")

    def parent_ready(self) -> MlflowWriter | None:
        """Wait for the parent run (`open`) and return its writer; raise the sweep's one error if it could not be
        opened (in the background: with the state saved, so `xtuner sweep resume` tries again)."""
        thread = self._parent_thread
        if thread is None or self._parent_cancelled:
            return self._opened
        thread.join()
        if self._parent_error is not None:
            self._parent_failed()
            raise self._parent_error
        if self.writer is None or isinstance(self.writer, _OpeningWriter):
            self.writer = self._opened
        return self._opened

    def _parent_failed(self) -> None:
        if self.fatal is None and self.state is not None and self.tracker is not None:  # opened in the background
            self.save()
            self.fatal = self._parent_error

    def save(self) -> None:
        assert self.state is not None
        if self.fatal:
            return  # the storage failed: nothing more is written there
        with self.lock:
            try:
                self.state.save(self.path)
            except OSError as e:
                self.storage_failed(e, f"writing {self.path}")

    def check_fatal(self) -> None:
        """Raise the storage failure that ends the sweep, if any (Tune's callbacks call this: the exception stops
        Tune's loop like a killed driver would, so unfinished trials stay resumable); also the failure to open the
        MLflow parent run in the background (`open`)."""
        if self._parent_error is not None:
            self._parent_failed()
        if self.fatal is not None:
            raise self.fatal

    def storage_failed(self, error: OSError | str, what: str) -> None:
        """Record the first storage failure as the error that ends the sweep (with the command that resumes it)."""
        if self.fatal is None:
            reason = error if isinstance(error, str) else (error.strerror or str(error))
            self.fatal = XtunerError(f"storage failed while {what}: {reason}. The sweep stopped; results so far are "
                                     f"kept. Free space (or fix the storage), then continue with: xtuner sweep resume "
                                     f"{self.sweep_dir}")  # fmt: skip

    def experiment_end(self) -> None:
        self.open()
        assert self.state is not None
        with self.lock:
            trials = self.state.trials.values()
            self.state.finished = len(trials) >= self.plan.n_trials and all(r.state in FINISHED for r in trials)
            self.save()
            if self.writer and self.state.finished:
                from xtuner.sweep.report import best_configs

                state, writer = self.state, self.writer
                best, summary = best_configs(state), summary_markdown(state)
                self._track(lambda: writer.close_parent(state, best, summary), "close the parent run", persist=True)

    def close_tracking(self, timeout: float = 60.0) -> None:
        """Give the writer at most `timeout` seconds to write what is queued (or, when the server is down, one more
        try); then name what MLflow still lacks."""
        if self._parent_thread is not None and not self._parent_go.is_set():  # never opened: stop the thread
            self._parent_cancelled = True
            self._parent_go.set()
        if self.tracker is None:
            return
        tracker, self.tracker = self.tracker, None
        tracker.close(timeout)
        with self.lock:
            self.save()
            pending = self.state.pending() if self.state else []
        if pending:
            trials = [p for p in pending if p != "parent"]
            what = (f"{len(trials)} finished trial{'s' if len(trials) != 1 else ''}" if trials else "") + \
                (" and " if trials and "parent" in pending else "") + ("the sweep's parent run" if "parent" in pending
                                                                      else "")  # fmt: skip
            print(redact_text(f"warning: MLflow at {self.tracking_uri} still lacks {what}; they are in {self.path}; "
                              f"write them with: xtuner sweep sync {self.sweep_dir}"), file=sys.stderr, flush=True)  # fmt: skip

    # ------------------------------------------------------------------------------------------ writer thread
    def _probe(self) -> None:
        from xtuner.sweep.checks import check_tracking

        if self.tracking_uri and self.tracking_uri.startswith(("http://", "https://")):
            check_tracking(self.tracking_uri, timeout=5.0)
        else:
            assert self.writer is not None
            self.writer.client.search_experiments(max_results=1)

    def _snapshot(self) -> SweepState:
        assert self.state is not None
        return copy.deepcopy(self.state)

    def _backfill(self, snap: SweepState) -> str:
        """Write what MLflow lacks up to `snap` (the server came back), then copy the run ids into the live state."""
        from xtuner.sweep.report import best_configs
        from xtuner.sweep.sync import Syncer

        assert self.writer is not None and self.state is not None
        syncer = Syncer(self.writer, snap, self.sweep_dir)
        syncer.parent()
        for rec in list(snap.trials.values()):
            syncer.child(rec)
        if snap.finished:
            syncer.close_parent(best_configs(snap), summary_markdown(snap))
        with self.lock:
            live = self.state
            live.experiment_id, live.parent_run_id = snap.experiment_id, snap.parent_run_id
            live.parent_tracked = live.parent_tracked or (snap.parent_tracked and live.finished)
            for tid, rec in snap.trials.items():
                now = live.trials.get(tid)
                if now is not None:
                    now.run_id = rec.run_id
                    now.tracked = now.tracked or (rec.tracked and rec.state == now.state)
            self.save()
        return syncer.report.summary()

    # ------------------------------------------------------------------------------------------ trials
    def trial_started(self, trial_id: str, config: dict[str, Any]) -> None:
        self.open()
        assert self.state is not None
        with self.lock:
            self._trial_started(trial_id, config)

    def _trial_started(self, trial_id: str, config: dict[str, Any]) -> None:
        assert self.state is not None
        rec = self.state.trials.get(trial_id)
        if rec is not None and rec.state in KEPT:
            self._replaying.add(trial_id)  # finished before the resume: its trainable only replays the result
            return
        if rec is None:
            group = self.plan.group_of(config)
            rec = TrialRecord(trial_id, group.key, group.task, group.method, group.model, group.seed,
                              group.main_metric, self.plan.to_flat(config), group.searched)  # fmt: skip
            self.state.trials[trial_id] = rec
        rec.state, rec.error = "running", None
        rec.started += 1
        self.state.finished = False
        rec.start_time = time.time()
        if self.writer:
            state, writer = self.state, self.writer
            self._track(lambda: writer.open_child(state, rec), f"open the run of trial {trial_id}", persist=True)
        self.save()
        verb = "started" if rec.started == 1 else "resumed"
        self._line(rec, verb, fmt_params(rec.searched_values()), "")

    def trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        with self.lock:
            self._trial_result(trial_id, result)

    def _trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        rec = self._rec(trial_id)
        if rec is not None and REPLAY not in result and trial_id not in self._replaying:
            self._train_losses(rec, result.get(LOSSES))
        if rec is None or FINAL in result or NONFINITE in result or REPLAY in result:
            return  # the final report is handled at completion
        key = f"dev/en/{rec.main_metric}"
        if key not in result:
            return
        rec.reports += 1
        rec.node_ip, rec.pid = result.get("node_ip", rec.node_ip), result.get("pid", rec.pid)
        epoch = float(result.get("epoch", 0.0))
        by_steps = rec.params.get("eval_interval") is not None
        step = int(result.get("step", 0)) if by_steps else int(round(epoch))
        if step <= rec.last_step:
            self.save()
            return  # already logged before a restart
        rec.dev_curve.append([epoch, float(result[key])])
        rec.last_step = step
        if self.writer:
            writer, result = self.writer, dict(result)
            self._track(lambda: writer.log_dev(rec, result, step), f"log trial {trial_id}'s dev metrics")
        self.save()
        at = f"step {step} (epoch {epoch:.2f})" if by_steps else f"epoch {epoch:g}"
        elapsed = fmt_seconds(time.time() - (rec.start_time or time.time()))
        self._line(rec, "dev", fmt_params(rec.searched_values()),
                   f"{at}: {rec.main_metric} {float(result[key]):.1f} ({elapsed})")  # fmt: skip

    def _train_losses(self, rec: TrialRecord, points: Any) -> None:
        """Training losses ([step, loss], reported with each dev result): kept in the state, logged as the stepped
        ``train/loss`` (steps not above the last one kept are repeats after a restart, and skipped)."""
        if not isinstance(points, list):
            return
        last = rec.train_loss[-1][0] if rec.train_loss else -1.0
        new = [[float(s), float(v)] for s, v in points if float(s) > last]
        if not new:
            return
        rec.train_loss.extend(new)
        if self.writer:
            writer = self.writer
            self._track(lambda: writer.log_losses(rec, new), f"log trial {rec.trial_id}'s training loss")

    def trial_complete(self, trial_id: str, result: dict[str, Any] | None) -> None:
        with self.lock:
            self._trial_complete(trial_id, result)

    def _trial_complete(self, trial_id: str, result: dict[str, Any] | None) -> None:
        rec = self._rec(trial_id)
        if rec is None or trial_id in self._replaying or self.fatal:
            return  # stopped by a storage failure: it stays running, and resume continues it
        result = result or {}
        if NONFINITE in result:
            rec.state, rec.error = "nonfinite", str(result.get("xt_message", "non-finite loss"))
        elif FINAL in result:
            rec.state = "done"
            rec.final = {
                k: float(v) for k, v in result.items() if _is_final_key(k) and isinstance(v, int | float)
            }
            if isinstance(result.get("weights_dir"), str):  # run_trial kept the weights there
                rec.weights = result["weights_dir"]
            if isinstance(result.get("intermediate_key"), str):  # its stage 1 (xtuner/intermediate)
                rec.intermediate_key = result["intermediate_key"]
            if isinstance(result.get("predictions_dir"), str):  # and wrote its per-example predictions there
                rec.predictions = result["predictions_dir"]
        else:
            rec.state = "pruned"
        self._finish(rec)

    def trial_checkpoint(self, trial_id: str) -> None:
        """Tune registered a checkpoint of the trial (after its dev result: Tune saves in a second step), so a
        retry from here on resumes from it."""
        with self.lock:
            rec = self._rec(trial_id)
            if rec is not None and trial_id not in self._replaying:
                rec.checkpoints += 1
                self.save()

    def trial_retry(self, trial_id: str, message: str, *, counted: int | None = None,
                    from_checkpoint: bool = True) -> None:  # fmt: skip
        """Tune restarts a failed trial (a lost worker or node): from its last checkpoint when it has one, in the
        same MLflow run. `counted` is Tune's count against max_failures (preempted nodes are not counted)."""
        with self.lock:
            self._trial_retry(trial_id, message, counted, from_checkpoint)

    def _trial_retry(self, trial_id: str, message: str, counted: int | None, from_checkpoint: bool) -> None:
        if any(t in message for t in FULL_DISK_TEXT):  # a retry would fail the same way
            self.storage_failed(message.splitlines()[0][:300], f"trial {trial_id} wrote its checkpoint")
            return
        rec = self._rec(trial_id)
        if rec is None or trial_id in self._replaying:
            return
        rec.failures += 1
        rec.error = message
        if self.writer:
            writer, tags = self.writer, {"xtuner.failures": str(rec.failures)}
            self._track(lambda: writer.tag_child(rec, tags), f"tag trial {trial_id}'s restart")
        self.save()
        last = f" after epoch {rec.dev_curve[-1][0]:g}" if rec.dev_curve else ""
        first = message.splitlines()[0][:160] if message else "worker died"
        where = "from its last checkpoint" if from_checkpoint else "from the start (no checkpoint yet)"
        budget = f"; {counted} of max_failures {self.plan.spec.max_failures} used" if counted is not None else ""
        self._line(rec, "retry", fmt_params(rec.searched_values()),
                   f"failed{last} ({first}); restarting {where} (restart {rec.failures}{budget})")

    def trial_error(self, trial_id: str, message: str) -> None:
        with self.lock:
            if any(t in message for t in FULL_DISK_TEXT):  # a worker could not write its checkpoint
                self.storage_failed(message.splitlines()[0][:300], f"trial {trial_id} wrote its checkpoint")
                return
            rec = self._rec(trial_id)
            if rec is None or trial_id in self._replaying:
                return
            rec.state, rec.error = "error", message
            self._finish(rec)

    def _finish(self, rec: TrialRecord) -> None:
        rec.end_time = time.time()
        if self.writer:
            writer, final = self.writer, copy.deepcopy(rec)
            self._track(lambda: _finish_child(writer, final, rec), f"close the run of trial {rec.trial_id}",
                        persist=True)  # fmt: skip
        self.save()
        secs = rec.end_time - (rec.start_time or rec.end_time)
        detail = end_detail(rec)
        self._line(rec, rec.state, fmt_params(rec.searched_values()), f"{detail}, {fmt_seconds(secs)}".lstrip(", "))

    # ------------------------------------------------------------------------------------------ helpers
    def _rec(self, trial_id: str) -> TrialRecord | None:
        self.open()
        assert self.state is not None
        return self.state.trials.get(trial_id)

    def _track(self, fn, what: str, *, persist: bool = False) -> None:
        """Queue an MLflow write (never blocks; see `xtuner.sweep.tracker`)."""
        if self.tracker is not None:
            self.tracker.submit(fn, what, persist=persist)

    def _line(self, rec: TrialRecord, verb: str, params: str, detail: str) -> None:
        """One progress line of at most `line_width()` columns: the params are shortened first, then the detail."""
        if self.quiet:
            return
        assert self.state is not None
        c = self.state.counts()
        done = sum(c[s] for s in FINISHED)
        n = self.plan.n_trials
        head = f"[{done:>{len(str(n))}}/{n}] {verb:<7} {rec.trial_id} {rec.task} {rec.method}"
        print(fit_line(head, params, detail, line_width()), flush=True)


def _finish_child(writer: MlflowWriter, final: TrialRecord, live: TrialRecord) -> None:
    """Close a child run from a copy of its record taken when the trial ended (the writer runs later), then mark the
    live record tracked."""
    final.run_id = final.run_id or live.run_id
    writer.finish_child(final)
    live.run_id, live.tracked = final.run_id, True


def _is_final_key(key: str) -> bool:
    return key.startswith(("test/", "dev/", "analysis/", "stage1/")) or key in (
        "trainable_params", "total_params", "train_seconds", "eval_seconds")  # fmt: skip


class _OpeningWriter:
    """The MlflowWriter while a thread still opens the parent run (`SweepEvents.open(background=True)`): every use,
    on the writer thread, waits for it (and raises its failure)."""

    def __init__(self, events: SweepEvents) -> None:
        self._events = events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._events.parent_ready(), name)
