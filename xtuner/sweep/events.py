"""What the driver does on each trial event (no Ray here; `xtuner.sweep.tune` forwards Tune's callbacks to it):
update the sweep state file, write MLflow (the single writer), print one concise progress line.

The events object pickles as its settings only (Tune pickles callbacks into its experiment state); the state file
and the MLflow client are (re)opened in `open`, which also makes a resumed sweep pick up its run ids.
A tracking failure in the middle of a sweep is reported once and does not stop the trials; the state file keeps
every result.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from xtuner.errors import XtunerError
from xtuner.sweep.report import fmt_params, summary_markdown
from xtuner.sweep.space import SweepPlan
from xtuner.sweep.state import FINISHED, STATE_FILE, SweepState, TrialRecord, exists, join
from xtuner.sweep.tracking import MlflowWriter

MAIN = "dev/en/main"  # every trial reports its task's main en-dev metric under this name too (ASHA, Optuna)
NONFINITE = "xt_nonfinite"  # result key set by the trainable when run_trial raised NonFiniteLossError
FINAL = "xt_final"  # result key of run_trial's last report (test metrics)
REPLAY = "xt_replay"  # a finished trial that Tune's (older) experiment state still thought unfinished
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
        self, plan: SweepPlan, sweep_dir: str, tracking_uri: str | None, quiet: bool = False
    ) -> None:
        self.plan, self.sweep_dir, self.tracking_uri, self.quiet = plan, str(sweep_dir), tracking_uri, quiet
        self._reset()

    def _reset(self) -> None:
        self.state: SweepState | None = None
        self.writer: MlflowWriter | None = None
        self._tracking_failed = False
        self._replaying: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {k: self.__dict__[k] for k in ("plan", "sweep_dir", "tracking_uri", "quiet")}

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)
        self._reset()

    @property
    def path(self) -> str:
        return join(self.sweep_dir, STATE_FILE)

    # ------------------------------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        if self.state is not None:
            return
        spec = self.plan.spec
        if exists(self.path):
            self.state = SweepState.load(self.path)
        else:
            self.state = SweepState(spec.name, spec.model_dump(mode="json"))
        if self.tracking_uri:
            self.state.tracking_uri = self.tracking_uri
            try:
                self._open_parent()
            except Exception as e:  # noqa: BLE001 - any MLflow failure here is the user's setup
                self.state = None
                raise XtunerError(
                    f"MLflow tracking at {self.tracking_uri}: {type(e).__name__}: {e}"
                ) from None
        self.save()

    def _open_parent(self) -> None:
        assert self.state is not None and self.tracking_uri
        self.writer = MlflowWriter(self.tracking_uri, self.plan.spec.experiment)
        self.writer.open_parent(self.state, self.state.spec, self.sweep_dir)

    def save(self) -> None:
        assert self.state is not None
        self.state.save(self.path)

    def experiment_end(self) -> None:
        self.open()
        assert self.state is not None
        trials = self.state.trials.values()
        self.state.finished = len(trials) >= self.plan.n_trials and all(r.state in FINISHED for r in trials)
        self.save()
        if self.writer and self.state.finished:
            from xtuner.sweep.report import best_configs

            self._track(
                lambda: self.writer.close_parent(
                    self.state, best_configs(self.state), summary_markdown(self.state)
                )
            )

    # ------------------------------------------------------------------------------------------ trials
    def trial_started(self, trial_id: str, config: dict[str, Any]) -> None:
        self.open()
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
            self._track(lambda: self.writer.open_child(self.state, rec))
        self.save()
        verb = "started" if rec.started == 1 else "resumed"
        self._line(rec, verb, fmt_params(rec.searched_values()))

    def trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        rec = self._rec(trial_id)
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
            self._track(lambda: self.writer.log_dev(rec, result, step))
        self.save()

    def trial_complete(self, trial_id: str, result: dict[str, Any] | None) -> None:
        rec = self._rec(trial_id)
        if rec is None or trial_id in self._replaying:
            return
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
        else:
            rec.state = "pruned"
        self._finish(rec)

    def trial_retry(self, trial_id: str, message: str, *, counted: int | None = None,
                    from_checkpoint: bool = True) -> None:  # fmt: skip
        """Tune restarts a failed trial (a lost worker or node): from its last checkpoint when it has one, in the
        same MLflow run. `counted` is Tune's count against max_failures (preempted nodes are not counted)."""
        rec = self._rec(trial_id)
        if rec is None or trial_id in self._replaying:
            return
        rec.failures += 1
        rec.error = message
        if self.writer:
            self._track(lambda: self.writer.tag_child(rec, {"xtuner.failures": str(rec.failures)}))
        self.save()
        last = f" after epoch {rec.dev_curve[-1][0]:g}" if rec.dev_curve else ""
        first = message.splitlines()[0][:160] if message else "worker died"
        where = "from its last checkpoint" if from_checkpoint else "from the start (no checkpoint yet)"
        budget = f"; {counted} of max_failures {self.plan.spec.max_failures} used" if counted is not None else ""
        self._line(rec, "retry", f"{fmt_params(rec.searched_values())}: failed{last} ({first}); restarting {where} "
                                 f"(restart {rec.failures}{budget})")  # fmt: skip

    def trial_error(self, trial_id: str, message: str) -> None:
        rec = self._rec(trial_id)
        if rec is None or trial_id in self._replaying:
            return
        rec.state, rec.error = "error", message
        self._finish(rec)

    def _finish(self, rec: TrialRecord) -> None:
        rec.end_time = time.time()
        if self.writer:
            self._track(lambda: self.writer.finish_child(rec))
        self.save()
        secs = rec.end_time - (rec.start_time or rec.end_time)
        main = rec.main_metric
        if rec.state == "done":
            others = [v for k, v in rec.final.items() if k.startswith("test/") and k.endswith("/" + main)
                      and k.split("/")[1] not in ("en", "avg", "gap")]  # fmt: skip
            detail = f"en-dev {rec.best_dev:.1f}" if rec.best_dev is not None else ""
            if f"test/en/{main}" in rec.final:
                detail += f", test en {rec.final[f'test/en/{main}']:.1f}"
            if others:
                detail += f", others {sum(others) / len(others):.1f}"
        elif rec.state == "pruned":
            last = rec.dev_curve[-1] if rec.dev_curve else [0, float("nan")]
            detail = f"at epoch {last[0]:g}, en-dev {last[1]:.1f}"
        else:
            detail = (rec.error or "").splitlines()[0][:160] if rec.error else ""
        self._line(rec, rec.state, f"{fmt_params(rec.searched_values())}: {detail} ({secs:.0f} s)")

    # ------------------------------------------------------------------------------------------ helpers
    def _rec(self, trial_id: str) -> TrialRecord | None:
        self.open()
        assert self.state is not None
        return self.state.trials.get(trial_id)

    def _track(self, fn) -> None:
        if self._tracking_failed:
            return
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - tracking must not kill the trials; the state file keeps results
            self._tracking_failed = True
            print(f"warning: MLflow tracking failed ({type(e).__name__}: {e}); results continue in {self.path}; "
                  "run `xtuner sweep sync` once the tracking server is back", file=sys.stderr)  # fmt: skip

    def _line(self, rec: TrialRecord, verb: str, text: str) -> None:
        if self.quiet:
            return
        assert self.state is not None
        c = self.state.counts()
        done = sum(c[s] for s in FINISHED)
        print(
            f"[{done:>3}/{self.plan.n_trials}] {verb:<9} {rec.trial_id} {rec.task} {rec.method} {text}",
            flush=True,
        )


def _is_final_key(key: str) -> bool:
    return key.startswith(("test/", "dev/", "analysis/")) and key != "dev/en/main" or key in (
        "trainable_params", "total_params", "train_seconds", "eval_seconds")  # fmt: skip
