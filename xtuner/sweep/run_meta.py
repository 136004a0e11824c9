"""What makes MLflow's runs table a comparison surface: run names, params, provenance tags, status, and links.

- `run_name`: task, method, the searched values (lr first) and the seed, e.g. ``synth-panx DPT lr=0.01 psl=16
  s1``: methods abbreviated (FT, DPT, SPT, LoRA), numbers compact (``1e-3``, ``0.03``, ``16``).
- `child_params`: the complete resolved trial config (`TrialConfig` with its defaults, the protocol filled in, the
  method's own settings with their defaults, so fine-tuning has no ``psl``), settings left unset (None by default,
  not given by the spec or a protocol) left out, integral numbers as integers (``epochs`` 2, not 2.0).
- `provenance_tags`: ``mlflow.source.git.commit`` (when xtuner runs from a git checkout; ``xtuner.git_dirty`` when
  it has local changes), ``xtuner.version``, ``xtuner.command`` (the command line, redacted by the writer).
- `STATUS`: the tag ``xtuner.status`` (done, pruned, failed, running) and `RUN_STATUS`, MLflow's run status: FINISHED
  for done, KILLED for pruned (stopped by the scheduler: the runs table shows it apart from done ones), FAILED for
  a NaN loss or a crash.
- `ui_links`: the MLflow UI addresses that open the experiment in "model training" mode (MLflow 3's UI opens in
  its GenAI mode unless the address says ``workflowType=machine_learning``; the experiment also gets the tag
  ``mlflow.experimentKind`` = ``custom_model_development``) and the sweep's parent run.
"""

from __future__ import annotations

import functools
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

STATUS = {"running": "running", "done": "done", "pruned": "pruned", "nonfinite": "failed", "error": "failed"}
RUN_STATUS = {"done": "FINISHED", "pruned": "KILLED", "nonfinite": "FAILED", "error": "FAILED"}
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
WORKFLOW = "workflowType=machine_learning"
DEFAULT_UI = "http://127.0.0.1:5000"  # `mlflow ui` / `mlflow server` default address
SHORT_METHOD = {"finetune": "FT", "deep_prompt": "DPT", "soft_prompt": "SPT", "lora": "LoRA"}
SHORT_KEY = {"learning_rate": "lr"}


def number(v: Any) -> str:
    """1e-3 -> "1e-3", 3e-05 -> "3e-5", 0.5 -> "0.5", 2.0 -> "2", 16 -> "16"."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if isinstance(v, float) and v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e5):
        mant, exp = f"{v:.2e}".split("e")
        return f"{mant.rstrip('0').rstrip('.')}e{int(exp)}"
    return f"{v:.4g}"


def run_name(rec: Any, *, with_model: bool = False) -> str:
    """``<task> <method> <searched k=v ...> s<seed>`` (the model's last path part too when a sweep has several)."""
    parts = [rec.task, SHORT_METHOD.get(rec.method, rec.method)]
    if with_model:
        parts.append(str(rec.model).rstrip("/").split("/")[-1].removeprefix("builtin:"))
    values = rec.searched_values()
    parts += [f"{SHORT_KEY.get(k, k)}={number(values[k])}" for k in sorted(values, key=_key_order)]
    parts.append(f"s{rec.seed}")
    return " ".join(parts)


def _key_order(key: str) -> tuple[int, str]:
    return (
        0 if key == "lr" else 1,
        key,
    )  # lr first: the runs table shows a nested run's first ~17 characters


def child_params(rec: Any) -> dict[str, Any]:
    """The complete resolved config of a trial (see the module doc), plus ``trial_id``."""
    from xtuner.errors import XtunerError
    from xtuner.methods import validate_settings
    from xtuner.trial.config import TrialConfig

    try:
        cfg = TrialConfig.from_flat(rec.params)
        settings = validate_settings(cfg.method, cfg.method_settings).model_dump(mode="json")
    except XtunerError:  # cannot happen for a validated plan; keep the flat config as it is
        resolved = dict(rec.params)
    else:
        resolved = cfg.model_dump(mode="json", exclude={"method_settings"})
        resolved.update(settings)
        written = {k: v for k, v in rec.params.items() if k in resolved}
        resolved.update(written)  # the values as the spec gave them (a float lr stays a float, ...)
    # a setting left at its None default is left out; a None the spec or a protocol wrote stays
    out = {k: as_written(v) for k, v in resolved.items() if v is not None or k in rec.params}
    out["trial_id"] = rec.trial_id
    return out


def as_written(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return int(v)  # epochs: 2, not 2.0
    return v


@functools.cache
def display_value(key: str, value: float) -> float:
    """A metric as logged to MLflow: scores in percent (``test/``, ``dev/``, ``best/``, ``analysis/``, not losses)
    rounded to 4 decimals, so that the runs table shows ``84.0816`` rather than ``84.08163265306122`` (a test set
    of 10,000 examples moves in steps of 0.01); the state file and the predictions keep full precision."""
    if key.startswith(("test/", "dev/", "best/")) and "loss" not in key:
        return round(float(value), 4)
    return float(value)


def provenance_tags() -> dict[str, str]:
    """Git commit (when xtuner runs from a checkout), package version and command line of this process."""
    from xtuner import __version__

    argv = list(sys.argv)
    prog = "xtuner" if argv and Path(argv[0]).name in ("xtuner", "__main__.py") else (argv[0] if argv else "")
    tags = {
        "xtuner.version": __version__,
        "xtuner.command": redact_command([prog, *argv[1:]])[:5000],
        "mlflow.source.name": f"xtuner {__version__}",
        "mlflow.source.type": "LOCAL",
    }  # the Source column
    commit, dirty = _git_state(Path(__file__).resolve().parents[2])
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["xtuner.git_dirty"] = "true" if dirty else "false"
    return tags


def redact_command(argv: list[str]) -> str:
    """The command line as one string, with the value of every secret-named ``KEY=VALUE`` argument (``--set
    mlflow_password=...``) masked, then URI passwords and registered secrets (`redact_text`)."""
    from xtuner.cluster.redact import MASK, is_secret_key, redact_text

    def one(arg: str) -> str:
        key, eq, value = arg.partition("=")
        return f"{key}={MASK}" if eq and value and is_secret_key(key.lstrip("-")) else arg

    return redact_text(shlex.join(one(a) for a in argv))


def _git_state(folder: Path) -> tuple[str | None, bool]:
    if not (folder / ".git").exists():
        return None, False
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()  # fmt: skip
        status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None, False
    return (head or None), bool(status.strip())


def ui_base(uri: str) -> tuple[str, str | None]:
    """(the UI's address, the command that starts it, or None when the tracking URI is a server already)."""
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/"), None
    return DEFAULT_UI, f"mlflow ui --backend-store-uri {_short_store(uri)} --port 5000"


def _short_store(uri: str) -> str:
    """A sqlite URI relative to the current folder when the database is under it (shorter to copy)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return uri
    path = Path(uri.removeprefix(prefix))
    try:
        return prefix + str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return uri


def ui_links(uri: str, experiment_id: str | None, parent_run_id: str | None) -> tuple[str | None, list[str]]:
    """(the command that starts the UI or None, [runs-table address, parent-run address])."""
    base, command = ui_base(uri)
    links = []
    if experiment_id:
        links.append(f"{base}/#/experiments/{experiment_id}/runs?{WORKFLOW}")
        if parent_run_id:  # with ?workflowType=... it would pass 100 columns; the page opens in GenAI layout
            links.append(f"{base}/#/experiments/{experiment_id}/runs/{parent_run_id}")
    return command, links
