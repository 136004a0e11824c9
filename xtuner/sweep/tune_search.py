"""Search algorithms and the scheduler of a sweep on Ray Tune (the Tune backend's second module; with
`xtuner.sweep.tune`, the only ones that import Ray).

- Search: grid = ``tune.grid_search`` over every point; random = Tune's sampling domains per group, every group
  crossed with ``num_samples`` (BasicVariantGenerator, seeded); optuna = one ``OptunaSearch`` per group with a
  define-by-run space of that group's searched settings (`GroupedSearch` deals trials round-robin; its state is
  pickled signed with the user's key, `xtuner.sweep.signing`), under a ``ConcurrencyLimiter``. A group is one
  task / method / model / seed.
- Scheduler: ASHA on ``dev/en/main`` with ``time_attr="epoch"``, one ASHA per task / method / model
  (`GroupedASHA`), so metrics of different tasks and methods that learn at different speeds are never ranked
  against each other; rungs stay below each group's epochs so a trial is never stopped at its final evaluation.
"""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from xtuner.sweep import signing
from xtuner.sweep.events import MAIN
from xtuner.sweep.space import Dist, SweepPlan, asha_max_t


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
            f.write(signing.dumps(self.__dict__))  # HMAC-signed with the user's key

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(signing.loads(f.read(), checkpoint_path))


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
