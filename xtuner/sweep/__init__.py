"""Sweeps: a YAML spec -> a validated plan -> Ray Tune trials of `run_trial` -> MLflow runs and Table-1 summaries.

Modules: `spec` (the YAML schema), `space` + `space_checks` (groups, grid points, validation), `limits`
(model-dependent bounds), `checks` (pre-flight: tracking URI, storage), `tune` + `tune_search` (the only modules
importing Ray), `events` + `tracker` + `tracking` + `state` (driver-side results: state file, the MLflow writer
thread, MLflow parent/child runs), `sync` (backfill), `lock` (one driver per sweep), `signing` (HMAC over the
folder's pickles), `report` (tables), `runner` (entry points used by `xtuner sweep`), `export` (JSON status, the
list of sweeps, `results`: a pandas DataFrame per sweep).
See docs/sweeps.md for the spec reference.
"""

from xtuner.sweep.export import list_sweeps, results
from xtuner.sweep.runner import load_plan, resume_sweep, run_sweep, sweep_status
from xtuner.sweep.space import SweepPlan, build_plan
from xtuner.sweep.spec import SweepSpec, load_spec

__all__ = [
    "SweepPlan",
    "SweepSpec",
    "build_plan",
    "load_plan",
    "list_sweeps",
    "load_spec",
    "results",
    "resume_sweep",
    "run_sweep",
    "sweep_status",
]
