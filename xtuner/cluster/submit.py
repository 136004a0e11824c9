"""`xtuner sweep submit`: run `xtuner sweep run SPEC` on a Ray cluster through Ray's job submission API.

This is what ``ray job submit --working-dir . -- python -m xtuner sweep run SPEC ...`` does, as a function:
the working directory (the xtuner checkout with its ``sweeps/``, honouring ``.gitignore``) is uploaded, the
entrypoint runs on the head node as the sweep driver (the single MLflow writer), and the trials are scheduled by
Tune on the GPU workers. ``python -m xtuner`` (not the ``xtuner`` script) makes the driver and the workers import
the uploaded code rather than whatever version is installed in the image.

Steps: `build_job` (pure: entrypoint + runtime_env) -> `probe_dashboard` (a short HTTP GET, so that a wrong or
unreachable address fails in seconds with an XtunerError naming it, instead of hanging in `requests`) ->
`JobSubmissionClient(address).submit_job(...)` -> optionally `wait_for_job`.

Environment: MLFLOW_TRACKING_USERNAME and every XTUNER_* variable set locally are forwarded to the job through
``runtime_env.env_vars``, except secrets (`withheld_env`: MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_TOKEN, any
secret-named XTUNER_* variable). Ray writes a job's runtime environment in clear into its logs
(``runtime_env_agent.log``) and shows it in the dashboard, so secrets go to the driver through files on the head
(``~/.mlflow/credentials``, mode 600) or the head's own environment (a Kubernetes Secret); `sweep submit` names the
variables it withheld (docs/cluster.md). `describe_job` shows the job with values masked. Ray's own token
(RAY_AUTH_MODE=token, ~/.ray/auth_token) is sent by Ray's client as an Authorization header; it is never copied into
the runtime env.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from xtuner.cluster.redact import is_secret_key, redact_params, redact_uri
from xtuner.errors import XtunerError

log = logging.getLogger(__name__)

FORWARDED_ENV = ("MLFLOW_TRACKING_USERNAME",)
WITHHELD_ENV = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")  # never into a runtime env: Ray logs it
FORWARDED_PREFIX = "XTUNER_"
# never uploaded, whatever .gitignore says: local environments, results, tracking databases, caches
UPLOAD_EXCLUDES = [".git", ".venv", "venv", "xtuner_results", "mlruns", "mlartifacts", "*.db", ".xtuner_cache",
                   "__pycache__", ".pytest_cache", ".ruff_cache"]  # fmt: skip
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def forwarded_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables a sweep job inherits from the submitting shell: the MLflow user name and XTUNER_*, if set, but
    no secret (`withheld_env`)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in sorted(environ.items())
            if v and (k in FORWARDED_ENV or k.startswith(FORWARDED_PREFIX)) and not is_secret_key(k)}  # fmt: skip


def withheld_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Names of the secrets set locally that a job does NOT get (Ray would write them into its logs)."""
    environ = os.environ if environ is None else environ
    return sorted(k for k, v in environ.items()
                  if v and (k in WITHHELD_ENV or (k.startswith(FORWARDED_PREFIX) and is_secret_key(k))))  # fmt: skip


def build_job(
    spec_path: str | Path,
    *,
    working_dir: str | Path = ".",
    extra_args: Sequence[str] = (),
    runtime_env: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """(entrypoint, runtime_env) for a sweep job; pure apart from reading the two paths.

    The spec must be a file inside `working_dir` (only that folder is uploaded); the entrypoint names it relative to
    it, shell-quoted, followed by `extra_args` (e.g. ``--storage s3://bucket/sweeps --tracking-uri http://...``).
    `runtime_env` entries are merged in: its env_vars win over forwarded ones, its excludes are added."""
    wd = Path(working_dir).expanduser().resolve()
    if not wd.is_dir():
        raise XtunerError(f"working directory {str(working_dir)!r} does not exist or is not a folder")
    spec = Path(spec_path).expanduser()
    spec = (spec if spec.is_absolute() else Path.cwd() / spec).resolve()
    if not spec.is_file():
        raise XtunerError(f"sweep spec {str(spec_path)!r} not found")
    if not spec.is_relative_to(wd):
        raise XtunerError(f"sweep spec {str(spec)!r} is outside the working directory {str(wd)!r}, which is all "
                          "that is uploaded to the cluster; copy it under sweeps/ or pass working_dir")  # fmt: skip
    rel = spec.relative_to(wd).as_posix()
    entrypoint = shlex.join(["python", "-m", "xtuner", "sweep", "run", rel, *map(str, extra_args)])
    extra = dict(runtime_env or {})
    env = {**forwarded_env(environ), **dict(extra.pop("env_vars", None) or {})}
    excludes = list(dict.fromkeys([*UPLOAD_EXCLUDES, *(extra.pop("excludes", None) or [])]))
    job_env: dict[str, Any] = {"working_dir": str(wd), "excludes": excludes, **extra}
    if env:
        job_env["env_vars"] = env
    return entrypoint, job_env


def describe_job(entrypoint: str, runtime_env: Mapping[str, Any]) -> str:
    """One printable line per setting, secrets masked: forwarded env vars show their names only."""
    env = runtime_env.get("env_vars") or {}
    shown = redact_params({k: v for k, v in runtime_env.items() if k != "env_vars"})
    lines = [f"entrypoint: {redact_uri(entrypoint)}"] + [f"{k}: {v}" for k, v in shown.items()]
    if env:
        lines.append("env_vars: " + ", ".join(f"{k}=***" for k in sorted(env)))
    return "\n".join(lines)


def dashboard_url(address: str) -> str:
    """``http://host:8265`` from ``host:port``, ``http(s)://host:port``; refuse ``ray://`` and GCS addresses."""
    address = (address or "").strip().rstrip("/")
    if not address:
        raise XtunerError(
            "cluster address is empty; give the Ray dashboard address, e.g. http://127.0.0.1:8265"
        )
    if "://" not in address:
        address = f"http://{address}"
    parsed = urlparse(address)
    if parsed.scheme not in ("http", "https"):
        raise XtunerError(f"cluster address {address!r}: job submission talks to the Ray dashboard over http(s), "
                          "e.g. http://127.0.0.1:8265 after `ray dashboard cluster.yaml`; not ray:// (Ray Client)")  # fmt: skip
    if not parsed.hostname:
        raise XtunerError(f"cluster address {address!r} has no host name")
    if parsed.port == 6379:
        raise XtunerError(f"cluster address {address!r} is the GCS port; job submission uses the dashboard "
                          "port (8265 by default)")  # fmt: skip
    return address


def probe_dashboard(address: str, timeout: float = 5.0) -> None:
    """GET ``<address>/api/version`` with a short timeout: any HTTP answer is fine (auth is checked later by
    Ray's client); no answer is an XtunerError naming the address."""
    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=timeout):  # noqa: S310 - user-given address
            return
    except urllib.error.HTTPError:
        return  # it answers; Ray's client reports 401/404 precisely
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise XtunerError(
            f"Ray cluster at {address} does not answer ({reason}). Start the port-forward with `ray dashboard "
            f"cluster.yaml` (or `kubectl port-forward svc/<cluster>-head-svc 8265`) and pass --address "
            f"http://127.0.0.1:8265; `ray up cluster.yaml` starts the cluster"
        ) from None


def submit(
    spec_path: str | Path,
    address: str,
    *,
    working_dir: str | Path = ".",
    extra_args: Sequence[str] = (),
    runtime_env: Mapping[str, Any] | None = None,
    wait: bool = False,
    timeout: float = 5.0,
    submission_id: str | None = None,
) -> str:
    """Submit the sweep `spec_path` to the Ray cluster whose dashboard is at `address`; return the job id.

    With `wait`, block until the job ends and raise XtunerError unless it SUCCEEDED. Validate the spec
    (`xtuner.sweep.runner.load_plan`) before calling this: the cluster only sees the file."""
    url = dashboard_url(address)
    entrypoint, job_env = build_job(
        spec_path, working_dir=working_dir, extra_args=extra_args, runtime_env=runtime_env
    )
    log.info("submitting to %s:\n%s", url, describe_job(entrypoint, job_env))
    probe_dashboard(url, timeout)
    client = _client(url)
    try:
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env=job_env, submission_id=submission_id,
                                   metadata={"xtuner_spec": Path(spec_path).name})  # fmt: skip
    except Exception as e:
        raise XtunerError(f"Ray cluster at {url} refused the job: {_reason(e)}") from None
    if wait:
        wait_for_job(client, job_id, url)
    return job_id


def wait_for_job(
    client: Any, job_id: str, address: str, *, poll_s: float = 5.0, timeout_s: float | None = None
) -> str:
    """Poll the job's status until it ends; return SUCCEEDED or raise XtunerError with the job's message."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        try:
            info = client.get_job_info(job_id)
        except Exception as e:
            raise XtunerError(
                f"lost the Ray cluster at {address} while waiting for job {job_id}: {_reason(e)}"
            ) from None
        status = str(getattr(info.status, "value", info.status))
        if status in TERMINAL:
            if status != "SUCCEEDED":
                raise XtunerError(f"job {job_id} on {address} ended {status}: {info.message or 'no message'}; "
                                  f"logs: ray job logs {job_id} --address {address}")  # fmt: skip
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise XtunerError(f"job {job_id} on {address} still {status} after {timeout_s:g} s")
        time.sleep(poll_s)


def _client(url: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(url)
    except Exception as e:
        raise XtunerError(f"cannot use the Ray cluster at {url}: {_reason(e)}") from None


def _reason(e: BaseException) -> str:
    text = redact_uri(" ".join(str(e).split()))[:500]
    if type(e).__name__ == "AuthenticationError" or "401" in text or "nauthorized" in text:
        return (f"{text} -- the cluster requires Ray token authentication: set RAY_AUTH_MODE=token and put the "
                "cluster's token in ~/.ray/auth_token (or RAY_AUTH_TOKEN_PATH) before submitting")  # fmt: skip
    return text or type(e).__name__
