"""The Tune backend (with `xtuner.sweep.tune_search`, the only modules that import Ray): a Tune `Tuner` over
`run_trial`, its resources and callback; search and scheduler are in `xtuner.sweep.tune_search`.

- Trainable: a function named ``xtuner_trial`` that turns its Tune config into the flat run_trial config
  (`SweepPlan.to_flat`) and runs it with `TuneReporter`, whose `report` calls ``tune.report(metrics,
  checkpoint=tune.Checkpoint.from_directory(dir))`` after each en-dev evaluation (plus ``dev/en/main``, the
  task's main metric under one name) and whose `resume_from` returns ``tune.get_checkpoint()``'s folder. A
  NonFiniteLossError ends the trial cleanly (a result flagged ``xt_nonfinite``), not as a retried crash. Trials get
  `worker_plan`: the plan without the tracking URI, storage URI and description.
- `EventsCallback` forwards Tune's events to `SweepEvents`, signs the experiment state Tune stages for upload
  (`get_state`), and ends Tune's loop on a storage failure (`check_fatal`).
- A local Ray binds to loopback only (`init_ray`, `loopback_only`), and its worker processes import what trials
  need as they start (`xtuner.trial.warm`); joining a cluster keeps Ray's defaults.
- Resources per method (`tune.with_resources` with a function of the config; fractional GPUs allowed),
  ``FailureConfig(max_failures)``, ``CheckpointConfig(num_to_keep)``, ``reuse_actors=True`` (run_trial keeps no
  state between calls), ``RAY_CHDIR_TO_TRIAL_DIR=0``; Ray's own console output is off (verbose 0, no worker
  logs): progress lines come from `SweepEvents`, which a Tune `Callback` feeds.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.result import EXPR_PARAM_FILE, EXPR_PARAM_PICKLE_FILE, EXPR_RESULT_FILE
from ray.tune.schedulers import FIFOScheduler

from xtuner.errors import XtunerError
from xtuner.sweep import signing
from xtuner.sweep.events import FINAL, MAIN, NONFINITE, REPLAY, SweepEvents
from xtuner.sweep.space import SweepPlan
from xtuner.sweep.state import (
    INTERMEDIATE,
    PREDICTIONS,
    STATE_FILE,
    WEIGHTS,
    join,
    list_names,
    remove_tree,
    sweep_folder,
)
from xtuner.sweep.tune_search import GroupedASHA, search_setup


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


def worker_plan(plan: SweepPlan) -> SweepPlan:
    """The plan the trials get (Ray pickles the trainable and ships it to every worker): without the tracking URI,
    the storage URI, the description and the spec's text, which workers do not need and which may hold secrets."""
    spec = plan.spec
    slim = spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"uri": ""}), "description": "",
                                   "storage": ""})  # fmt: skip
    slim._text = None
    return SweepPlan(slim, plan.groups, [])


def make_trainable(plan: SweepPlan, replay: dict[str, dict[str, Any]] | None = None,
                   weights_root: str | None = None, predictions_root: str | None = None,
                   intermediate_root: str | None = None):  # fmt: skip
    """The trainable; `replay` maps trials that finished before a resume to the result they report at once;
    `weights_root` (``<sweep>/weights``) is where trials keep their weights (spec ``keep_weights``),
    `predictions_root` (``<sweep>/predictions``) where they write their per-example test predictions,
    `intermediate_root` (``<storage>/_intermediate``) where they share their stage-1 results."""
    plan = worker_plan(plan)

    def xtuner_trial(config: dict[str, Any]) -> None:
        from xtuner.trial import NonFiniteLossError, run_trial
        from xtuner.trial.warm import match_ray_threads

        match_ray_threads()  # a worker warmed before Ray set OMP_NUM_THREADS (xtuner.trial.warm)

        trial_id = tune.get_context().get_trial_id()
        if replay and trial_id in replay:
            tune.report({**replay[trial_id], REPLAY: 1.0})
            return
        group = plan.group_of(config)
        reporter = TuneReporter(f"dev/en/{group.main_metric}", plan.spec.checkpoints.enabled)
        flat = plan.to_flat(config)
        if weights_root and flat.get("keep_weights", "none") != "none":
            flat["weights_dir"] = join(weights_root, trial_id)
        if predictions_root and flat.get("predictions", True):
            flat["predictions_dir"] = join(predictions_root, trial_id)
        if intermediate_root and flat.get("intermediate_variant", "none") != "none":
            flat["intermediate_dir"] = intermediate_root  # stage-1 results shared by the storage's sweeps
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


# ------------------------------------------------------------------------------------------------ callback
class EventsCallback(tune.Callback):
    """Forwards Tune's trial events to the driver-side `SweepEvents` (state file, MLflow, progress lines), and signs
    the experiment state Tune stages for upload (`get_state`)."""

    def __init__(self, events: SweepEvents) -> None:
        self.events = events
        self._staging: str | None = None  # Tune's driver staging folder, learnt from the first trial

    def setup(self, **info) -> None:
        self.events.open()

    def on_step_begin(self, iteration, trials, **info) -> None:
        self.events.check_fatal()  # a full disk (noticed by any thread) ends Tune's loop here
        if trials and self._staging is None:
            self._staging = trials[0].storage.experiment_driver_staging_path

    def on_step_end(self, iteration, trials, **info) -> None:
        self.events.check_fatal()

    def on_trial_add(self, iteration, trials, trial, **info) -> None:
        if self._staging is None:
            self._staging = trial.storage.experiment_driver_staging_path

    def get_state(self) -> None:
        """Tune calls this from ``TuneController.save_to_dir`` after writing the experiment state and the searcher
        state into its staging folder, and before uploading that folder to the sweep folder: the moment to sign them
        (`xtuner.sweep.signing`). It also drops the copy of xtuner's state file that Tune downloaded on a resume (it
        downloads every top-level .json), which the upload would otherwise write over the live one. Returns None:
        this callback has no state of its own to pickle."""
        if self._staging is None:
            return None
        staged = Path(self._staging)
        (staged / STATE_FILE).unlink(missing_ok=True)
        try:
            signing.sign_staged(self.events.sweep_dir, str(staged))
        except OSError as e:
            self.events.storage_failed(e, "signing the experiment state")
        return None

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.events.trial_started(trial.trial_id, trial.config)
        self.events.check_fatal()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.events.trial_result(trial.trial_id, result)
        self.events.check_fatal()

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        self.events.trial_checkpoint(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.events.trial_complete(trial.trial_id, trial.last_result)
        self.events.check_fatal()
        if not self.events.plan.spec.checkpoints.keep_finished:  # only needed to resume an unfinished trial
            # through the sweep folder's URI: `trial.path` has no scheme on an object store
            remove_checkpoints(join(self.events.sweep_dir, trial_dirname(trial)))

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.events.trial_retry(trial.trial_id, _error_text(trial), counted=getattr(trial, "num_failures", None),
                                from_checkpoint=getattr(trial, "checkpoint", None) is not None)  # fmt: skip

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.events.trial_error(trial.trial_id, _error_text(trial))
        self.events.check_fatal()

    def on_experiment_end(self, trials, **info) -> None:
        self.events.experiment_end()


class ResultsJson(JsonLoggerCallback):
    """Ray's own JSON logger: ``result.json`` (every result, the final test metrics included) and ``params.json`` in
    each trial folder, which Ray's ``ExperimentAnalysis(<storage>/<name>)`` reads; without its ``params.pkl``, a
    pickle that a resume would have to trust (`xtuner.sweep.signing`), and that nothing reads."""

    _SAVED_FILE_TEMPLATES = [EXPR_RESULT_FILE, EXPR_PARAM_FILE]

    def update_config(self, trial, config) -> None:
        super().update_config(trial, config)
        Path(trial.local_path, EXPR_PARAM_PICKLE_FILE).unlink(missing_ok=True)


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
def init_ray(num_cpus: int | None = None) -> bool:
    """Use a running Ray (this process's, or RAY_ADDRESS) or start a local one without dashboard or log noise;
    True when this call started or connected it (and so should shut it down).

    A local Ray listens on loopback only (`loopback_only`): every socket of its processes (GCS, raylet, object
    manager, agents, workers, the driver) binds to 127.0.0.1, so nothing on the network can reach it. Joining a
    cluster (RAY_ADDRESS) keeps Ray's cluster defaults (docs/cluster.md lists the ports to keep inside the
    cluster's network)."""
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # a failed trial is one progress line (the state keeps its message; the traceback is in the trial's error.txt)
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    started = not ray.is_initialized()
    if started:
        # RAY_ADDRESS (set by `ray job submit`, or by a user) joins a cluster; otherwise start a private local
        # instance rather than auto-joining whatever /tmp/ray names (a stale address there hangs the driver)
        address = os.environ.get("RAY_ADDRESS") or "local"
        runtime_env = None
        if address == "local":
            loopback_only()
            keep_credentials_out_of_ray_logs()
            if os.environ.get("XTUNER_WARM_WORKERS", "1") != "0":  # idle workers import what trials need
                runtime_env = {"worker_process_setup_hook": "xtuner.trial.warm.warm_imports"}
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, configure_logging=True, runtime_env=runtime_env)  # fmt: skip
    logging.getLogger("ray").setLevel(logging.ERROR)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    return started


CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN")


def keep_credentials_out_of_ray_logs() -> None:
    """Stop Tune from copying the driver's AWS credentials into its trials' runtime_env (Tune's
    ``ENV_VARS_TO_PROPAGATE``): Ray's runtime_env agent logs every runtime_env in clear, in the world-readable
    ``runtime_env_agent.log``. Only for a private local Ray, whose worker processes inherit the driver's
    environment anyway, so trials still see the credentials. On a cluster Tune keeps propagating them;
    docs/cluster.md says to use instance roles or credential files there instead."""
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE = frozenset(class_cache.ENV_VARS_TO_PROPAGATE) - set(CREDENTIAL_ENV)


def loopback_only() -> None:
    """Make the Ray started next in this process bind to 127.0.0.1. Ray takes its node address from
    ``services.get_node_ip_address``, which answers 127.0.0.1 when ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` is off
    (Ray's single-machine mode, the default on macOS and Windows); its GCS, raylet and worker servers then bind to that
    address instead of all interfaces. Ray reads the variable when it is first imported, so the module constant is
    set too. (``ray.init(_node_ip_address="127.0.0.1")`` does not do it: Ray replaces a loopback address by the
    machine's own.) `tests/test_loopback.py` lists the listening sockets of a local Ray's processes."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


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
    t0 = time.time()
    if resume:  # refuse a folder that cannot or must not be resumed before a local Ray starts (10-20 s)
        _check_resumable(sweep_folder(storage, plan.spec.name))
    if not events.quiet and not ray.is_initialized():  # a local Ray takes ~20 s to start: say so
        where = os.environ.get("RAY_ADDRESS")
        print(f"connecting to Ray at {where} ..." if where else "starting a local Ray ...", flush=True)
    started = init_ray()
    if started and not events.quiet:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        print(f"Ray ready in {time.time() - t0:.0f} s ({cpus} CPUs); starting trials", flush=True)
    try:
        check_cluster(plan)
        events.open(background=True)  # state file; the MLflow parent run opens while Tune starts
        _fit(plan, storage, events, resume, retry_errored, replay)
        events.parent_ready()  # (a short sweep may end before the parent run is open)
        events.check_fatal()  # a storage failure noticed after Tune's last step
    finally:
        if started:
            ray.shutdown()


def _check_resumable(exp_dir: str) -> None:
    if not tune.Tuner.can_restore(exp_dir):
        raise XtunerError(f"sweep folder {exp_dir!r} has no Tune state to resume (was it started?)")
    signing.verify(exp_dir)


def _fit(plan: SweepPlan, storage: str, events: SweepEvents, resume: bool, retry_errored: bool,
         replay: dict[str, dict[str, Any]] | None) -> None:  # fmt: skip
    exp_dir = sweep_folder(storage, plan.spec.name)
    trainable = make_trainable(plan, replay, join(exp_dir, WEIGHTS), join(exp_dir, PREDICTIONS),
                               join(storage, INTERMEDIATE))
    callback = EventsCallback(events)
    if resume:
        _check_resumable(exp_dir)  # again right before Tune unpickles anything of the folder
        tuner = tune.Tuner.restore(exp_dir, trainable=trainable, resume_unfinished=True,
                                   resume_errored=retry_errored)  # fmt: skip
        tuner._local_tuner.get_run_config().callbacks = [callback, ResultsJson()]  # fresh (the pickled ones are stale)
    else:
        spec = plan.spec
        param_space, search_alg, num_samples = search_setup(plan)
        scheduler = GroupedASHA(plan) if spec.scheduler.type == "asha" else FIFOScheduler()
        tuner = _new_tuner(events, lambda: tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=MAIN, mode="max", search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
                reuse_actors=True, trial_name_creator=trial_name, trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=spec.name, storage_path=str(storage), callbacks=[callback, ResultsJson()], verbose=0,
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoints.num_to_keep),
            ),
        ))  # fmt: skip
    try:
        tuner.fit()
    except Exception:
        if events.fatal is not None:  # raised from a callback; Tune may have wrapped it in a TuneError
            raise events.fatal from None
        raise


def _new_tuner(events: SweepEvents, make):
    """A fresh Tuner (it writes tuner.pkl into the sweep folder), signed at once; a storage failure there is the
    sweep's one error."""
    try:
        tuner = make()
        signing.sign_files(events.sweep_dir, ["tuner.pkl"])
    except OSError as e:
        events.storage_failed(e, "writing tuner.pkl")
        events.check_fatal()
    return tuner
