"""Session-wide real services for the tests that need them (started lazily, only when a test asks):

- ``ray_cluster``: ONE local Ray instance, started the way a local sweep starts it (`xtuner.sweep.tune.init_ray`,
  2 CPUs: no dashboard, loopback only), shut down at the end; yields its GCS address so subprocesses (a CLI driver)
  can join it through ``RAY_ADDRESS``.
- ``mlflow_server``: ONE real ``mlflow server`` process on 127.0.0.1 (a free port, sqlite backend and
  ``--artifacts-destination`` in a temp folder), ready once ``/health`` answers, killed at the end; yields its URI.
- ``XTUNER_HOME`` points at a temp folder for the whole session (the signing key of sweep folders).
- ``tiny_model``: the model name trials use: the shipped ``builtin:tiny-xlmr`` when it verifies, else a cached
  rebuild ``builtin:tiny-xlmr@0`` (``xtuner model build tiny-xlmr``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# the per-user key that signs sweep folders (xtuner.sweep.signing) lives in a temp folder, not in ~/.config/xtuner;
# subprocess drivers inherit it, so their folders verify in this process
os.environ.setdefault("XTUNER_HOME", tempfile.mkdtemp(prefix="xtuner-test-home-"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    import ray

    from xtuner.sweep.tune import init_ray

    os.environ.pop("RAY_ADDRESS", None)
    init_ray(num_cpus=2)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def start_mlflow_server(root: Path) -> tuple[subprocess.Popen, str]:
    """A real ``mlflow server`` on 127.0.0.1 (sqlite in `root`, artifacts in ``root/artifacts``), in its own process
    group (so a test can stop, resume or kill all of it), answering /health; returns (process, URI)."""
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")]  # fmt: skip
    log = open(root / "server.log", "wb")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", timeout=120, proc=proc)
    except RuntimeError:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc, uri


def stop_mlflow_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, uri = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield uri
    finally:
        stop_mlflow_server(proc)


@pytest.fixture(scope="session")
def tiny_model() -> str:
    from xtuner.errors import XtunerError
    from xtuner.models import resolve_model

    try:
        resolve_model("builtin:tiny-xlmr", build_if_missing=False)
        return "builtin:tiny-xlmr"
    except XtunerError:
        resolve_model("builtin:tiny-xlmr@0", build_if_missing=True)
        return "builtin:tiny-xlmr@0"


def per_language_csv(client, run_id: str, tmp_path) -> list[str]:
    """The lines of a child run's per_language.csv artifact."""
    path = client.download_artifacts(run_id, "per_language.csv", str(tmp_path / run_id))
    return Path(path).read_text().splitlines()
