"""Session-wide real services for the tests that need them (started lazily, only when a test asks):

- ``ray_cluster``: ONE local Ray instance (``ray.init(num_cpus=2, include_dashboard=False)``), shut down at the
  end; yields its GCS address so subprocesses (a CLI driver) can join it through ``RAY_ADDRESS``.
- ``mlflow_server``: ONE real ``mlflow server`` process on 127.0.0.1 (a free port, sqlite backend and
  ``--artifacts-destination`` in a temp folder), ready once ``/health`` answers, killed at the end; yields its URI.
- ``tiny_model``: the model name trials use: the shipped ``builtin:tiny-xlmr`` when it verifies, else a cached
  rebuild ``builtin:tiny-xlmr@0`` (``xtuner model build tiny-xlmr``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


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
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging

    import ray

    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")]  # fmt: skip
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", timeout=120, proc=proc)
        yield uri
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


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
