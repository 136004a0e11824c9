"""From a validated spec to the sweep plan: groups, their search spaces, every grid point, all checked up front.

A *group* is one (task, method, model, seed). Its run_trial settings are merged in this order (later wins):
``trial:`` block < ``epochs:`` < ``tasks.<t>.trial`` < ``methods.<m>`` < ``tasks.<t>.methods.<m>``. In a method
block a scalar is fixed, a list is a grid axis (grid) or a choice (random/optuna), and ``{loguniform: [a, b]}``,
``{uniform: [a, b]}``, ``{randint: [a, b]}`` (inclusive) are distributions (random/optuna only). Method settings
live only in their method's block, so ``psl`` never multiplies ``finetune``. A key of ``methods:`` is an arm
(`xtuner.sweep.arms`): a method's name, or a name whose block says ``method: NAME``. A ``protocol:`` setting is
resolved in `Group.flat`, so a preset fills what the blocks leave unset.

Each trial's Tune config names its group and its searched values; `SweepPlan.to_flat` turns it into the flat
run_trial config. Shapes: grid ``{"point": {"group": g, "params": {..}}}``; random ``{"group": g, "sampled": {g:
{..}, ..}}``; optuna ``{"group": g, "params": {..}}``. Nothing here imports Ray.

`build_plan` validates the meaning of the spec, raising one XtunerError naming the spec path: task, method, model
and language names; every setting belongs to TrialConfig or to its method; every grid point (and, for random and
optuna, every choice and distribution end) passes TrialConfig and the method's settings model
(`validate_settings`); search/scheduler conflicts (`xtuner.sweep.space_checks`).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xtuner.errors import XtunerError, unknown_name
from xtuner.paths import folder_problem
from xtuner.sweep.space_checks import (
    check_group_search,
    check_languages,
    check_search,
    check_values,
)
from xtuner.sweep.spec import SweepSpec
from xtuner.tasks.base import absolute_split_source
from xtuner.trial.config import TrialConfig

RESERVED = {"task": "tasks:", "model": "model:/models:", "method": "methods:", "seed": "seeds:"}
FORBIDDEN = {"method_settings": "write method settings in methods.<method>", "output_dir": "the sweep keeps "
             "checkpoints in its storage; trials write to their own temp dirs",
             "predictions_dir": "the sweep keeps them in <storage>/<name>/predictions/<trial>/ (turn them off with "
             "predictions: false)",
             **dict.fromkeys(("intermediate", "intermediate_variant"), "write it in tasks.<task>.intermediate"),
             "intermediate_dir": "the sweep keeps stage-1 results in its storage"}  # fmt: skip
DISTRIBUTIONS = ("loguniform", "uniform", "randint")
PATH_SETTINGS = ("data_dir", "cache_dir")
SOURCE_SETTINGS = ("train_data", "validation_data", "test_data")  # hub | <folder> | <kind>:<folder>


@dataclass(frozen=True)
class Dist:
    kind: str  # loguniform | uniform | randint (inclusive)
    low: float
    high: float

    def ends(self) -> list[Any]:
        return [int(self.low), int(self.high)] if self.kind == "randint" else [self.low, self.high]

    def __str__(self) -> str:
        return f"{self.kind}({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class Group:
    key: str  # g00, g01, ... (safe as a dict key in a Tune param space)
    task: str
    method: str
    model: str
    seed: int
    main_metric: str
    fixed: dict[str, Any]
    axes: dict[str, list[Any]]
    dists: dict[str, Dist]
    origin: dict[str, list[str]] = field(repr=False)  # setting -> spec path
    base: str = ""  # the registered method `method` (an arm of methods:) runs; "" = the same name

    @property
    def label(self) -> str:
        return f"{self.task} / {self.method} / {self.model} / seed {self.seed}"

    @property
    def searched(self) -> list[str]:
        return sorted({*self.axes, *self.dists})

    def grid_points(self) -> list[dict[str, Any]]:
        keys = sorted(self.axes)
        return [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*(self.axes[k] for k in keys))
        ]

    def flat(self, params: dict[str, Any]) -> dict[str, Any]:
        """The trial's flat config, its protocol resolved (the settings MLflow logs and the trial runs)."""
        from xtuner.sweep.arms import resolved

        return resolved({**self.fixed, **{k: v for k, v in params.items() if k in self.axes or k in self.dists}})

    def values(self, key: str, default: Any = None) -> list[Any]:
        """Every value `key` takes in this group: a distribution's ends, else its value at every grid point with the
        protocol resolved (a protocol may set it)."""
        if key in self.dists:
            return self.dists[key].ends()
        try:
            return [self.flat(p).get(key, default) for p in self.grid_points()]
        except XtunerError:
            return [self.fixed.get(key, default)]

    def epochs_min(self) -> float:
        if "epochs" in self.axes:
            return float(min(self.axes["epochs"]))
        if "epochs" in self.dists:
            return float(self.dists["epochs"].low)
        default = TrialConfig.model_fields["epochs"].default
        try:  # a protocol may set the epochs
            return float(min(self.flat(p).get("epochs", default) for p in self.grid_points()))
        except XtunerError:
            return float(self.fixed.get("epochs", default))


@dataclass
class SweepPlan:
    spec: SweepSpec
    groups: dict[str, Group]
    warnings: list[str] = field(default_factory=list)  # printed by the dry run and by `sweep run`

    @property
    def grid(self) -> list[tuple[str, dict[str, Any]]]:
        """Every trial of a grid sweep as (group key, searched values), in a fixed order."""
        return [(g.key, p) for g in self.groups.values() for p in g.grid_points()]

    def run_order(self) -> list[tuple[str, dict[str, Any]]]:
        """Grid points in the order Tune starts them. Under ASHA they are shuffled (seeded by search_seed): ASHA's
        asynchronous rungs compare a trial only with those that reached the rung before it, so a sorted grid (every
        small learning rate first) would set low cutoffs and let the weak trials through."""
        points = self.grid
        if self.spec.scheduler.type == "asha":
            random.Random(self.spec.search_seed).shuffle(points)
        return points

    @property
    def n_trials(self) -> int:
        if self.spec.search == "grid":
            return len(self.grid)
        return len(self.groups) * self.spec.num_samples

    def to_flat(self, config: dict[str, Any]) -> dict[str, Any]:
        """The flat run_trial config of a Tune trial config (any of the three shapes in the module doc)."""
        c = config.get("point", config)
        group = self.groups[c["group"]]
        params = c["sampled"][group.key] if "sampled" in c else c.get("params", {})
        return group.flat(params)

    def group_of(self, config: dict[str, Any]) -> Group:
        return self.groups[config.get("point", config)["group"]]

    def resources(self, method: str) -> tuple[float, float]:
        """CPU and GPU per trial of an arm of methods: (its own resources, else its method's, else the default)."""
        from xtuner.sweep.arms import arm_resources

        return arm_resources(self.spec, method)


# ------------------------------------------------------------------------------------------------ building
def build_plan(spec: SweepSpec, *, resolve_models: bool = False) -> SweepPlan:
    """Validate the meaning of `spec` and expand it into groups; raise one XtunerError naming the spec path."""
    from xtuner.sweep.arms import base_method, check_resource_keys
    from xtuner.tasks import task_names

    valid_tasks = task_names()
    for t in spec.tasks:
        if t not in valid_tasks:
            raise spec.error(["tasks", t], str(unknown_name("task", t, valid_tasks)))
    for m in spec.methods:
        base_method(spec, m)
    for t, over in spec.tasks.items():
        for m in over.methods:
            if m not in spec.methods:
                raise spec.error(
                    ["tasks", t, "methods", m], f"method {m!r} is not in methods: ({', '.join(spec.methods)})"
                )
    check_resource_keys(spec)
    from xtuner.sweep.limits import check_model_limits, check_models, epoch_warnings

    check_models(spec, resolve_models)
    if spec.data_dir and not Path(spec.data_dir).expanduser().is_dir():
        raise spec.error(["data_dir"], f"{spec.data_dir!r} is not a directory")
    base, base_origin = _fixed_block(spec, spec.trial, ["trial"])
    if spec.epochs is not None:
        if "epochs" in spec.trial:
            raise spec.error(["epochs"], "set epochs either at the top level or in trial:, not both")
        base["epochs"], base_origin["epochs"] = spec.epochs, ["epochs"]
    if spec.data_dir:
        base["data_dir"], base_origin["data_dir"] = (
            str(Path(spec.data_dir).expanduser().resolve()),
            ["data_dir"],
        )
    if spec.eval_split is not None and "eval_split" in spec.trial:
        raise spec.error(["eval_split"], "set eval_split either at the top level or in trial:, not both")
    if "eval_split" not in base:  # always a param of every trial, so MLflow and reports can tell test from dev
        base["eval_split"], base_origin["eval_split"] = spec.eval_split or "test", ["eval_split"]
    for key, setting, value in (("keep_weights", "keep_weights", spec.keep_weights),
                                ("representations", "representation_rows", spec.representations)):  # fmt: skip
        if setting in spec.trial:
            raise spec.error(["trial", setting], f"set it with the top-level key {key}:")
        if value:
            base[setting], base_origin[setting] = value, [key]
    combos = itertools.product(sorted(spec.tasks), sorted(spec.methods), spec.model_names, spec.seeds)
    groups = [_group(spec, f"g{i:02d}", *combo, base, base_origin) for i, combo in enumerate(combos)]
    plan = SweepPlan(spec, {g.key: g for g in groups})
    check_search(spec, plan)
    check_model_limits(spec, plan)
    plan.warnings = epoch_warnings(plan)
    return plan


def _group(
    spec: SweepSpec, key: str, t: str, m: str, model: str, seed: int, base: dict, base_origin: dict
) -> Group:
    """One task / arm of methods: / model / seed: merge the blocks (see the module doc), then check it."""
    from xtuner.sweep.arms import ARM_KEY, base_method
    from xtuner.tasks import get_task

    task = get_task(t)
    runs = base_method(spec, m)
    fixed, origin = dict(base), dict(base_origin)
    over, over_origin = _fixed_block(spec, spec.tasks[t].trial, ["tasks", t, "trial"])
    fixed.update(over)
    origin.update(over_origin)
    fixed.update(task=t, method=runs, model=model, seed=seed)
    axes: dict[str, list[Any]] = {}
    dists: dict[str, Dist] = {}
    blocks = [(spec.methods[m], ["methods", m]), (spec.tasks[t].methods.get(m), ["tasks", t, "methods", m])]
    for block, loc in blocks:
        for name, value in (block or {}).items():
            if name == ARM_KEY and loc == ["methods", m]:
                continue  # the arm's method, not a setting
            _check_key(spec, name, runs, loc + [name])
            for d in (fixed, axes, dists):
                d.pop(name, None)
            _place(spec, name, value, loc + [name], fixed, axes, dists)
            origin[name] = loc + [name]
    from xtuner.sweep.intermediate_checks import intermediate_block

    i_fixed, i_axes, i_origin = intermediate_block(spec, t)
    fixed.update(i_fixed)
    axes.update(i_axes)
    origin.update(i_origin)
    group = Group(key, t, m, model, seed, task.main_metric, fixed, axes, dists, origin, base=runs)
    has_protocol = fixed.get("protocol") is not None or "protocol" in axes
    if "lr" not in fixed and "lr" not in axes and "lr" not in dists and not has_protocol:
        raise spec.error(["methods", m], f"no learning rate for task {t!r}: set lr (a value or a list)")
    check_languages(spec, group, task)
    check_group_search(spec, group)
    check_values(spec, group)
    return group


def _fixed_block(spec: SweepSpec, block: dict[str, Any], loc: list[str]) -> tuple[dict, dict]:
    out, origin = {}, {}
    for key, value in block.items():
        if key in RESERVED:
            raise spec.error(loc + [key], f"{key!r} is set by {RESERVED[key]} at the top level, not here")
        if key in FORBIDDEN:
            raise spec.error(loc + [key], f"{key!r} cannot be set in a sweep: {FORBIDDEN[key]}")
        if key not in TrialConfig.model_fields:
            hint = str(unknown_name("trial setting", key, _common_settings())).removeprefix(
                "unknown trial setting "
            )
            extra = " (a method setting: put it in methods.<method>)" if _is_method_setting(key) else ""
            raise spec.error(loc + [key], f"unknown trial setting {hint}{extra}")
        if key in PATH_SETTINGS and isinstance(value, str):
            value = str(Path(value).expanduser().resolve())
            problem = folder_problem(value)
            if problem:
                raise spec.error(loc + [key], f"{value!r} {problem}")
        if key in SOURCE_SETTINGS and isinstance(value, str):
            try:
                value = absolute_split_source(value)
            except XtunerError as e:
                raise spec.error(loc + [key], str(e)) from None
        out[key], origin[key] = value, loc + [key]
    return out, origin


def _common_settings() -> list[str]:
    return [k for k in TrialConfig.model_fields if k not in RESERVED and k not in FORBIDDEN]


def _is_method_setting(key: str) -> bool:
    from xtuner.methods import get_method, method_names

    return any(key in get_method(m).setting_names() for m in method_names())


def _check_key(spec: SweepSpec, key: str, method: str, loc: list[str]) -> None:
    from xtuner.methods import get_method

    if key in RESERVED:
        where = "methods.<arm> only (method: NAME)" if key == "method" else f"{RESERVED[key]} at the top level"
        raise spec.error(loc, f"{key!r} is set by {where}, not here")
    if key in FORBIDDEN:
        raise spec.error(loc, f"{key!r} cannot be set in a sweep: {FORBIDDEN[key]}")
    own = get_method(method).setting_names()
    if key not in TrialConfig.model_fields and key not in own:
        err = unknown_name("setting", key, own + _common_settings(), where=f"for method {method!r}")
        raise spec.error(loc, str(err))


def _place(
    spec: SweepSpec, key: str, value: Any, loc: list[str], fixed: dict, axes: dict, dists: dict
) -> None:
    if isinstance(value, list):
        if not value:
            raise spec.error(loc, "an empty list: give at least one value")
        axes[key] = value
    elif isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in (*DISTRIBUTIONS, "choice"):
            raise spec.error(
                loc,
                f"a distribution is one of {', '.join(DISTRIBUTIONS)}, choice: e.g. {{loguniform: [1.0e-5, 1.0e-3]}}; got {value!r}",
            )
        kind, args = next(iter(value.items()))
        if kind == "choice":
            _place(
                spec, key, args if isinstance(args, list) else [args], loc + ["choice"], fixed, axes, dists
            )
            return
        ok = (
            isinstance(args, list)
            and len(args) == 2
            and all(isinstance(a, int | float) and not isinstance(a, bool) and math.isfinite(a) for a in args)
        )
        if not ok or not args[0] < args[1]:
            raise spec.error(loc + [kind], f"expects [low, high] finite numbers with low < high, got {args!r}")
        if kind == "loguniform" and args[0] <= 0:
            raise spec.error(loc + [kind], f"loguniform needs low > 0, got {args[0]!r}")
        if kind == "randint" and not all(float(a).is_integer() for a in args):
            raise spec.error(loc + [kind], f"randint needs integer ends, got {args!r}")
        dists[key] = Dist(kind, float(args[0]), float(args[1]))
    else:
        fixed[key] = value


def asha_max_t(group: Group) -> float:
    """ASHA's max_t for a group: just below its shortest epochs, so no rung sits at a final evaluation."""
    return group.epochs_min() * (1 - 1e-6)
