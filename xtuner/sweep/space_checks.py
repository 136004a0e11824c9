"""Checks of a sweep plan's groups, split out of `xtuner.sweep.space`: languages exist for the task, every grid
point (or every choice and distribution end) passes TrialConfig and its method's settings, and the conflicts between
search, num_samples, distributions and the scheduler. Each raises one XtunerError naming the spec path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from xtuner.errors import XtunerError, unknown_name
from xtuner.trial.config import TrialConfig

if TYPE_CHECKING:
    from xtuner.sweep.space import Group, SweepPlan
    from xtuner.sweep.spec import SweepSpec


def check_languages(spec: SweepSpec, group: Group, task: Any) -> None:
    langs = group.fixed.get("languages")
    if langs is None:
        return
    if not isinstance(langs, list) or not langs:
        raise spec.error(group.origin["languages"], "languages: a non-empty list of language codes")
    for lang in langs:
        if lang not in task.languages:
            err = unknown_name("language", lang, task.languages, where=f"for task {task.name!r}")
            raise spec.error(group.origin["languages"], str(err))


def check_values(spec: SweepSpec, group: Group) -> None:
    """Validate every grid point (grid), or every choice and distribution end one key at a time (random/optuna)."""
    if spec.search == "grid":
        points = group.grid_points()
    else:
        first = {k: v[0] for k, v in group.axes.items()} | {k: d.ends()[0] for k, d in group.dists.items()}
        points = [first] + [
            {**first, k: v}
            for k, values in sorted({**group.axes, **{k: d.ends() for k, d in group.dists.items()}}.items())
            for v in values
        ]
    from xtuner.sweep.arms import resolve_or_spec_error

    seen: set[str] = set()
    for params in points:
        flat = resolve_or_spec_error(
            spec, group.origin, {**group.fixed, **{k: v for k, v in params.items() if k in group.searched}}
        )
        key = repr(sorted(flat.items(), key=lambda kv: kv[0]))
        if key not in seen:
            seen.add(key)
            check_point(spec, group, flat)


def check_point(spec: SweepSpec, group: Group, flat: dict[str, Any]) -> None:
    from xtuner.methods import get_method, validate_settings

    common = {k: v for k, v in flat.items() if k in TrialConfig.model_fields}
    settings = {k: v for k, v in flat.items() if k not in TrialConfig.model_fields}
    try:
        TrialConfig.model_validate({**common, "method_settings": settings})
    except ValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        where = group.origin.get(key, group.origin.get("protocol", [key]))
        raise spec.error(
            where, f"{err['msg']} (got {flat.get(key)!r}, {group.task} / {group.method})"
        ) from None
    from xtuner.tasks import get_task

    try:
        get_task(group.task).check_dev_split(str(flat.get("dev_split", "validation")))
    except XtunerError as e:
        raise spec.error(group.origin.get("dev_split", group.origin.get("protocol", ["tasks", group.task])),
                         str(e)) from None  # fmt: skip
    try:  # xquad, tydiqa, tatoeba: no dev set apart from English's selection set (Task.no_dev_eval)
        langs = flat.get("languages")
        get_task(group.task).check_eval_split(str(flat.get("eval_split", "test")), list(langs) if langs else None)
    except XtunerError as e:
        raise spec.error(group.origin.get("eval_split", ["tasks", group.task]), str(e)) from None
    method = group.base or group.method
    try:
        get_method(method).settings.model_validate(settings)
    except ValidationError as e:
        loc = e.errors()[0]["loc"]
        key = str(loc[0]) if loc else ""
        try:
            validate_settings(method, settings)
            message = str(e)
        except XtunerError as bad:
            message = str(bad)
        raise spec.error(group.origin.get(key, ["methods", group.method]), message) from None


def check_search(spec: SweepSpec, plan: SweepPlan) -> None:
    """Conflicts between search, num_samples, distributions and the scheduler (per group: `check_group_search`).

    - grid: no distributions (they cannot be enumerated); num_samples must be 1 (repeat with seeds:).
    - random/optuna: num_samples >= 2, and every group searches at least one setting (else its trials repeat).
    - asha: every trial must run more epochs than grace_period, else ASHA never acts; rungs are kept below each
      group's epochs so a trial is never stopped at its final evaluation.
    """
    if spec.search == "grid" and spec.num_samples != 1:
        raise spec.error(
            ["num_samples"], "grid search runs every point once: use seeds: to repeat, or search: random"
        )
    if spec.search != "grid" and spec.num_samples < 2:
        raise spec.error(
            ["num_samples"],
            f"search: {spec.search} needs num_samples >= 2 (trials per task/method/model/seed)",
        )


def check_group_search(spec: SweepSpec, g: Group) -> None:
    if spec.search == "grid" and g.dists:
        k = sorted(g.dists)[0]
        raise spec.error(
            g.origin[k], f"a distribution ({g.dists[k]}) needs search: random or optuna; grid takes lists"
        )
    if spec.search != "grid" and not g.searched:
        raise spec.error(["methods", g.method], f"search: {spec.search} has nothing to search for {g.label}: "
                         "give a list or a distribution (e.g. lr: {loguniform: [1.0e-5, 1.0e-3]}), or use search: grid")  # fmt: skip
    if spec.search == "optuna":
        for k, values in g.axes.items():
            if not all(v is None or isinstance(v, bool | int | float | str) for v in values):
                raise spec.error(
                    g.origin[k], "optuna chooses among scalars only (numbers, strings, booleans)"
                )
    if spec.scheduler.type == "asha" and g.epochs_min() <= spec.scheduler.grace_period:
        raise spec.error(["scheduler", "grace_period"], f"ASHA's grace_period ({spec.scheduler.grace_period:g}) must be "
                         f"below the epochs of every trial ({g.label} runs {g.epochs_min():g}); ASHA would never stop a trial")  # fmt: skip
