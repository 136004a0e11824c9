"""Bounds that depend on the models and on the sweep's size, checked with the rest of the plan before Ray starts.

- `check_models`: every model resolves; one available here (a built-in, a local folder, the HF cache) has intact
  files (`xtuner.models.checks`: weights, and before a sweep starts, a tokenizer that fits its embeddings).
- `check_model_limits`: ``max_seq_length`` (every value a group can take) within each such model's positions, at
  dry-run time, naming the spec key that set it; for a prompt method that shifts the input's positions,
  ``max_seq_length + psl`` (the largest of each a trial can get) too. A well-known hub model that is not in the
  cache here is checked with its known limits (`xtuner.models.checks.known_config`).
- `epoch_warnings`: ``epochs`` past `EPOCHS_WARN` is allowed but warned about, with the dry run's time estimate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xtuner.errors import XtunerError
from xtuner.trial.config import TrialConfig

if TYPE_CHECKING:
    from xtuner.sweep.space import Group, SweepPlan
    from xtuner.sweep.spec import SweepSpec


def check_models(spec: SweepSpec, resolve: bool) -> None:
    """Every model resolves; one that is available here (a built-in, a local folder, the HF cache) has intact files
    (`xtuner.models.checks`), and with `resolve` (before a sweep starts) a tokenizer that fits its embeddings."""
    from xtuner.models import resolve_model
    from xtuner.models.checks import check_model

    loc = ["model"] if spec.model is not None else ["models"]
    trust = bool(spec.trial.get("trust_remote_code", False))
    for name in spec.model_names:
        # a built-in resolves only when every file matches the manifest of its build, tokenizer included: loading
        # its tokenizer again (transformers and torch in the driver, seconds) would check nothing more
        tokenizer = resolve and not name.startswith("builtin:")
        try:
            check_model(resolve_model(name, build_if_missing=resolve), name, trust_remote_code=trust,
                        tokenizer=tokenizer)  # fmt: skip
        except XtunerError as e:
            raise spec.error(loc, str(e)) from None


def check_model_limits(spec: SweepSpec, plan: SweepPlan) -> None:
    """max_seq_length (plus a prompt's psl) within each model's positions, for models whose config is available
    without the network or whose limits are known."""
    from xtuner.models import resolve_model
    from xtuner.models.checks import check_max_seq_length, known_config, model_config

    configs = {}
    for name in spec.model_names:
        try:
            configs[name] = model_config(resolve_model(name, build_if_missing=False)) or known_config(name)
        except XtunerError:
            configs[name] = known_config(name)  # not built yet: checked when it is
    default = TrialConfig.model_fields["max_seq_length"].default
    for g in plan.groups.values():
        config = configs.get(g.model)
        if config is None:
            continue
        for value in g.values("max_seq_length", default):
            if isinstance(value, int):
                try:
                    check_max_seq_length(value, config, g.model)
                except XtunerError as e:
                    raise spec.error(g.origin.get("max_seq_length", ["trial", "max_seq_length"]), str(e)) from None
        _check_prompt_positions(spec, g, config, default)


def _check_prompt_positions(spec: SweepSpec, g: Group, config: object, default: int) -> None:
    """Every trial of `g` (a distribution at its largest end): max_seq_length + the method's position offset."""
    from xtuner.methods import validate_settings
    from xtuner.models.checks import check_max_seq_length

    highest = {k: d.ends()[-1] for k, d in g.dists.items()}
    for point in g.grid_points():
        try:
            cfg = TrialConfig.from_flat({**g.flat(point), **highest})
            offset = validate_settings(cfg.method, cfg.method_settings).position_offset()
        except (XtunerError, TypeError, ValueError):
            continue  # an invalid setting: reported by the trial's own checks
        if not offset:
            continue  # this point adds no positions; the next ones may (shift_positions: [false, true])
        method = g.method if g.method == cfg.method else f"{g.method} ({cfg.method})"
        try:
            check_max_seq_length(cfg.max_seq_length, config, g.model, psl=offset,
                                 label=f"task {g.task}, method {method}")  # fmt: skip
        except XtunerError as e:
            loc = next((g.origin[k] for k in ("psl", "max_seq_length", "protocol") if k in g.origin),
                       ["methods", g.method])  # fmt: skip
            raise spec.error(loc, str(e)) from None


EPOCHS_WARN = 100  # more epochs than any transfer sweep uses (the paper's longest runs are 30-100 epochs)


def epoch_warnings(plan: SweepPlan) -> list[str]:
    """A warning, with the dry run's time estimate, for epochs beyond `EPOCHS_WARN`."""
    over = sorted({float(e) for g in plan.groups.values() for e in g.values("epochs", 3)
                   if isinstance(e, int | float) and e > EPOCHS_WARN})  # fmt: skip
    if not over:
        return []
    from xtuner.cluster.estimate import REFERENCE_GPU, estimate_gpu_hours
    from xtuner.sweep.report import planned_trials

    trials = [{**t, "gpu": max(float(t["gpu"]), 1.0)} for t in planned_trials(plan)]
    est = estimate_gpu_hours(trials)
    if est.total_hours > 0:
        cost = f"the dry run estimates {est.total_hours:,.3g} GPU-hours ({REFERENCE_GPU}, every trial to the end)"
    else:
        models = ", ".join(sorted({t["model"] for t in trials}))
        cost = f"no time estimate for {models}; every trial trains {over[-1]:g} times over its training set"
    return [f"warning: epochs {over[-1]:g} is far beyond what transfer sweeps use (at most {EPOCHS_WARN}); {cost}. "
            "Lower epochs unless this is meant"]  # fmt: skip
