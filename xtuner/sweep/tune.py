"""The ONE module that imports Ray: a Tune `Tuner` over `run_trial`, its search, scheduler, resources and callback.

- Trainable: a function named ``xtuner_trial`` that turns its Tune config into the flat run_trial config
  (`SweepPlan.to_flat`) and runs it with `TuneReporter`, whose `report` calls ``tune.report(metrics,
  checkpoint=tune.Checkpoint.from_directory(dir))`` after each en-dev evaluation (plus ``dev/en/main``, the
  task's main metric under one name) and whose `resume_from` returns ``tune.get_checkpoint()``'s folder. A
  NonFiniteLossError ends the trial cleanly (a result flagged ``xt_nonfinite``), not as a retried crash.
- Search: grid = ``tune.grid_search`` over every point; random = Tune's sampling domains per group, every group
  crossed with ``num_samples`` (BasicVariantGenerator, seeded); optuna = one ``OptunaSearch`` per group with a
  define-by-run space of that group's searched settings (`GroupedSearch` deals trials round-robin), under a
  ``ConcurrencyLimiter``. A group is one task / method / model / seed.
- Scheduler: ASHA on ``dev/en/main`` with ``time_attr="epoch"``, one ASHA per task / method / model
  (`GroupedASHA`), so metrics of different tasks and methods that learn at different speeds are never ranked
  against each other; rungs stay below each group's epochs so a trial is never stopped at its final evaluation.
- Resources per method (`tune.with_resources` with a function of the config; fractional GPUs allowed),
  ``FailureConfig(max_failures)``, ``CheckpointConfig(num_to_keep)``, ``reuse_actors=True`` (run_trial keeps no
  state between calls), ``RAY_CHDIR_TO_TRIAL_DIR=0``; Ray's own console output is off (verbose 0, no worker
  logs): progress lines come from `SweepEvents`, which a Tune `Callback` feeds.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from xtuner.errors import XtunerError
from xtuner.sweep.events import FINAL, MAIN, NONFINITE, REPLAY, SweepEvents
from xtuner.sweep.space import Dist, SweepPlan, asha_max_t
from xtuner.sweep.state import WEIGHTS, join, list_names, remove_tree, sweep_folder


# ------------------------------------------------------------------------------------------------ trainable
class TuneReporter:
    """run_trial's Reporter inside a Tune trial."""

    def __init__(self, main_key: str, checkpoints: bool) -> None:
        self.main_key, self.checkpoints = main_key, checkpoints
        self._download: str | None = None  # a checkpoint fetched from an object store, removed by `cleanup`

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None = None) -> None:
        m = dict(metrics)
        if m.pop("done", None):  # run_trial's final report; Tune reserves "done"
            m[FINAL] = 1.0
        if self.main_key in m:
            m[MAIN] = m[self.main_key]
        if checkpoint_dir and self.checkpoints and os.path.isdir(checkpoint_dir):
            tune.report(m, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))
        else:
            tune.report(m)

    def resume_from(self) -> str | None:
        """The checkpoint folder itself on a local or shared file system; from an object store, a download into
        a trial temp folder (`xtuner.trial.scratch`: a killed worker's copy is removed by the next trial on the
        node), removed by `cleanup` when the trial ends."""
        import pyarrow.fs as pafs

        ckpt = tune.get_checkpoint()
        if ckpt is None:
            return None
        if isinstance(ckpt.filesystem, pafs.LocalFileSystem) and os.path.isdir(ckpt.path):
            return ckpt.path
        from xtuner.trial import scratch

        self._download = str(scratch.make_dir("resume"))
        return ckpt.to_directory(self._download)

    def cleanup(self) -> None:
        if self._download:
            shutil.rmtree(self._download, ignore_errors=True)
            self._download = None


def make_trainable(
    plan: SweepPlan, replay: dict[str, dict[str, Any]] | None = None, weights_root: str | None = None
):
    """The trainable; `replay` maps trials that finished before a resume to the result they report at once;
    `weights_root` (``<sweep>/weights``) is where trials keep their weights (spec ``keep_weights``)."""

    def xtuner_trial(config: dict[str, Any]) -> None:
        from xtuner.trial import NonFiniteLossError, run_trial

        trial_id = tune.get_context().get_trial_id()
        if replay and trial_id in replay:
            tune.report({**replay[trial_id], REPLAY: 1.0})
            return
        group = plan.group_of(config)
        reporter = TuneReporter(f"dev/en/{group.main_metric}", plan.spec.checkpoints.enabled)
        flat = plan.to_flat(config)
        if weights_root and flat.get("keep_weights", "none") != "none":
            flat["weights_dir"] = join(weights_root, trial_id)
        try:
            run_trial(flat, reporter)
        except NonFiniteLossError as e:
            tune.report({NONFINITE: 1.0, "xt_message": str(e)})
        finally:
            reporter.cleanup()

    def resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
        cpu, gpu = plan.resources(plan.group_of(config).method)
        return tune.PlacementGroupFactory([{"CPU": cpu, "GPU": gpu}])

    return tune.with_resources(xtuner_trial, resources)


def trial_name(trial) -> str:
    return str(trial.trial_id)


def trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


# ------------------------------------------------------------------------------------------------ search
class OptunaSpace:
    """Define-by-run space of one group: categorical for lists, float/int for distributions."""

    def __init__(self, axes: dict[str, list[Any]], dists: dict[str, Dist]) -> None:
        self.axes, self.dists = axes, dists

    def __call__(self, trial) -> None:
        for key in sorted(self.axes):
            trial.suggest_categorical(key, self.axes[key])
        for key in sorted(self.dists):
            d = self.dists[key]
            if d.kind == "randint":
                trial.suggest_int(key, int(d.low), int(d.high))
            else:
                trial.suggest_float(key, d.low, d.high, log=d.kind == "loguniform")


class GroupedSearch(Searcher):
    """One searcher per group; suggestions are dealt round-robin until each group had `per_group` trials."""

    def __init__(self, searchers: dict[str, Searcher], per_group: int, metric: str, mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self._subs, self._per = searchers, per_group
        self._used = dict.fromkeys(searchers, 0)
        self._owner: dict[str, str] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str):
        open_groups = [g for g in self._subs if self._used[g] < self._per]
        if not open_groups:
            return Searcher.FINISHED
        group = min(open_groups, key=lambda g: self._used[g])
        params = self._subs[group].suggest(trial_id)
        if params is None or params == Searcher.FINISHED:
            return params
        self._used[group] += 1
        self._owner[trial_id] = group
        return {"group": group, "params": params}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._owner and self.metric in result:
            self._subs[self._owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._owner:
            ok = result if result and self.metric in result else None
            self._subs[self._owner[trial_id]].on_trial_complete(trial_id, ok, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def _domain(value: list[Any] | Dist):
    if isinstance(value, list):
        return tune.choice(value)
    if value.kind == "loguniform":
        return tune.loguniform(value.low, value.high)
    if value.kind == "uniform":
        return tune.uniform(value.low, value.high)
    return tune.randint(int(value.low), int(value.high) + 1)  # inclusive high, as in the spec


def search_setup(plan: SweepPlan) -> tuple[dict[str, Any], Any, int]:
    """(param_space, search_alg, num_samples) for the spec's search mode."""
    spec = plan.spec
    if spec.search == "grid":
        points = [{"group": key, "params": params} for key, params in plan.run_order()]
        space = {"point": tune.grid_search(points)}
        return space, BasicVariantGenerator(max_concurrent=spec.max_concurrent or 0), 1
    if spec.search == "random":
        sampled = {
            g.key: {k: _domain(v) for k, v in {**g.axes, **g.dists}.items()} for g in plan.groups.values()
        }
        space = {"group": tune.grid_search(list(plan.groups)), "sampled": sampled}
        alg = BasicVariantGenerator(max_concurrent=spec.max_concurrent or 0, random_state=spec.search_seed)
        return space, alg, spec.num_samples
    subs: dict[str, Searcher] = {
        g.key: OptunaSearch(
            space=OptunaSpace(g.axes, g.dists), metric=MAIN, mode="max", seed=spec.search_seed + i
        )
        for i, g in enumerate(plan.groups.values())
    }
    alg = GroupedSearch(subs, spec.num_samples, MAIN, "max")
    return (
        {},
        ConcurrencyLimiter(alg, max_concurrent=spec.max_concurrent or len(subs) * spec.num_samples),
        plan.n_trials,
    )


# ------------------------------------------------------------------------------------------------ scheduler
class GroupedASHA(FIFOScheduler):
    """ASHA per task / method / model: each bucket gets its own `ASHAScheduler` with its own max_t."""

    def __init__(self, plan: SweepPlan) -> None:
        super().__init__()
        s = plan.spec.scheduler
        self._bucket: dict[str, str] = {}
        max_t: dict[str, float] = {}
        for g in plan.groups.values():
            b = f"{g.task}|{g.method}|{g.model}"
            self._bucket[g.key] = b
            max_t[b] = min(max_t.get(b, float("inf")), asha_max_t(g))
        self._subs = {
            b: ASHAScheduler(time_attr="epoch", metric=MAIN, mode="max", max_t=t, grace_period=s.grace_period,
                             reduction_factor=s.reduction_factor, brackets=s.brackets, stop_last_trials=False)
            for b, t in max_t.items()
        }  # fmt: skip
        self.stopped = 0

    def _sub(self, trial) -> ASHAScheduler:
        config = trial.config.get("point", trial.config)
        return self._subs[self._bucket[config["group"]]]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def on_trial_add(self, tune_controller, trial) -> None:
        self._sub(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = self._sub(trial).on_trial_result(tune_controller, trial, result)
        self.stopped += action == TrialScheduler.STOP
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._sub(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._sub(trial).on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._sub(trial).on_trial_error(tune_controller, trial)

    def debug_string(self) -> str:
        return f"GroupedASHA: {len(self._subs)} buckets, {self.stopped} trials stopped"


# ------------------------------------------------------------------------------------------------ callback
class EventsCallback(tune.Callback):
    """Forwards Tune's trial events to the driver-side `SweepEvents` (state file, MLflow, progress lines)."""

    def __init__(self, events: SweepEvents) -> None:
        self.events = events

    def setup(self, **info) -> None:
        self.events.open()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.events.trial_started(trial.trial_id, trial.config)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.events.trial_result(trial.trial_id, result)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.events.trial_complete(trial.trial_id, trial.last_result)
        if not self.events.plan.spec.checkpoints.keep_finished:  # only needed to resume an unfinished trial
            # through the sweep folder's URI: `trial.path` has no scheme on an object store
            remove_checkpoints(join(self.events.sweep_dir, trial_dirname(trial)))

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.events.trial_retry(trial.trial_id, _error_text(trial), counted=getattr(trial, "num_failures", None),
                                from_checkpoint=getattr(trial, "checkpoint", None) is not None)  # fmt: skip

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.events.trial_error(trial.trial_id, _error_text(trial))

    def on_experiment_end(self, trials, **info) -> None:
        self.events.experiment_end()


def remove_checkpoints(trial_path: str) -> None:
    try:
        for name in list_names(trial_path):
            if name.startswith("checkpoint_"):
                remove_tree(join(trial_path, name))
    except OSError:
        pass  # a checkpoint that cannot be removed only costs space


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "trial failed"


# ------------------------------------------------------------------------------------------------ run / resume
def init_ray() -> bool:
    """Use a running Ray (this process's, or RAY_ADDRESS) or start a local one without dashboard or log noise;
    True when this call started or connected it (and so should shut it down)."""
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = not ray.is_initialized()
    if started:
        # RAY_ADDRESS (set by `ray job submit`, or by a user) joins a cluster; otherwise start a private local
        # instance rather than auto-joining whatever /tmp/ray names (a stale address there hangs the driver)
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, configure_logging=True)  # fmt: skip
    logging.getLogger("ray").setLevel(logging.ERROR)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    return started


def check_cluster(plan: SweepPlan) -> None:
    """Refuse requests no node (running, or that the autoscaler may add) can ever place: Tune would wait for ever."""
    from xtuner.cluster.resources import check_cluster_resources

    for method in sorted(plan.spec.methods):
        cpu, gpu = plan.resources(method)
        try:
            check_cluster_resources(gpu, required_cpu_per_trial=cpu)
        except XtunerError as e:
            where = f"resources.methods.{method}" if method in plan.spec.resources.methods else "resources"
            raise XtunerError(f"{where} ({method}: {cpu:g} CPU, {gpu:g} GPU per trial): {e}") from None


def run(plan: SweepPlan, storage: str, events: SweepEvents, *, resume: bool = False, retry_errored: bool = False,
        replay: dict[str, dict[str, Any]] | None = None) -> None:  # fmt: skip
    """Run (or resume) the sweep to the end; results arrive through `events`."""
    started = init_ray()
    try:
        check_cluster(plan)
        events.open()  # state file and MLflow parent run, before any trial starts
        _fit(plan, storage, events, resume, retry_errored, replay)
    finally:
        if started:
            ray.shutdown()


def _fit(plan: SweepPlan, storage: str, events: SweepEvents, resume: bool, retry_errored: bool,
         replay: dict[str, dict[str, Any]] | None) -> None:  # fmt: skip
    exp_dir = sweep_folder(storage, plan.spec.name)
    trainable = make_trainable(plan, replay, join(exp_dir, WEIGHTS))
    callback = EventsCallback(events)
    if resume:
        if not tune.Tuner.can_restore(exp_dir):
            raise XtunerError(f"sweep folder {exp_dir!r} has no Tune state to resume (was it started?)")
        tuner = tune.Tuner.restore(exp_dir, trainable=trainable, resume_unfinished=True,
                                   resume_errored=retry_errored)  # fmt: skip
        tuner._local_tuner.get_run_config().callbacks = [
            callback
        ]  # fresh callback (the pickled one is stale)
    else:
        spec = plan.spec
        param_space, search_alg, num_samples = search_setup(plan)
        scheduler = GroupedASHA(plan) if spec.scheduler.type == "asha" else FIFOScheduler()
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=MAIN, mode="max", search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
                reuse_actors=True, trial_name_creator=trial_name, trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=spec.name, storage_path=str(storage), callbacks=[callback], verbose=0,
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoints.num_to_keep),
            ),
        )  # fmt: skip
    tuner.fit()
