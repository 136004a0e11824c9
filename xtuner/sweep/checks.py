"""Pre-flight check of the tracking URI, before Ray starts (storage: `xtuner.cluster.storage.check_storage`).

- ``http(s)://`` tracking: GET ``<uri>/health`` (what ``mlflow server`` serves), falling back to the REST API's
  experiment search, each with a short timeout, through MLflow's HTTP client and credentials; no answer, or one
  that is not MLflow's, is an error naming the URI. `check_server` (report, analyze) only needs an answer.
- ``sqlite:///path``: the database file (or its folder, when the file does not exist yet) must be writable.
- ``file:`` URIs and plain paths: the folder must be writable (created if missing).
- other schemes (databricks, ...) are left to MLflow.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from xtuner.errors import XtunerError


def check_tracking(uri: str, timeout: float = 5.0) -> None:
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        _check_http(uri.rstrip("/"), timeout)
    elif parsed.scheme == "sqlite":
        db = sqlite_path(uri)
        if db is None:
            return  # in-memory
        target = db if db.exists() else db.parent
        if not target.exists():
            raise XtunerError(f"tracking URI {uri!r}: folder {str(db.parent)!r} does not exist")
        if not os.access(target, os.W_OK):
            raise XtunerError(f"tracking URI {uri!r}: {str(target)!r} is not writable")
    elif parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
        check_writable_dir(path, what=f"tracking URI {uri!r}")


def check_server(uri: str, timeout: float = 5.0) -> None:
    """For commands that only read MLflow (`report`, `analyze`): an ``http(s)://`` server must answer within
    `timeout` (MLflow's own client retries a dead server for minutes before it fails); other URIs are left to MLflow."""
    if urlparse(uri).scheme in ("http", "https"):
        _check_http(uri.rstrip("/"), timeout, mlflow_only=False)


@contextlib.contextmanager
def tracker_errors(uri: str) -> Iterator[None]:
    """For commands that read MLflow: MLflow's refusal of the URI (an unsupported or retired backend such as a
    plain folder, a database it cannot open) or a missing database driver (``mysql://`` without ``MySQLdb``) becomes
    one XtunerError naming the URI and MLflow's first line, not a traceback."""
    from mlflow.exceptions import MlflowException

    from xtuner.cluster.redact import redact_uri

    try:
        yield
    except MlflowException as e:
        first = next((ln.strip() for ln in str(e.message).splitlines() if ln.strip()), type(e).__name__)
        raise XtunerError(f"tracking URI {redact_uri(uri)!r}: {first}") from None
    except ModuleNotFoundError as e:
        raise XtunerError(f"tracking URI {redact_uri(uri)!r}: MLflow needs the Python module {e.name!r} for it "
                          "(install its database driver)") from None  # fmt: skip


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URI (None for in-memory)."""
    rest = uri[len("sqlite://") :]
    if rest in ("", "/", "/:memory:"):
        return None
    return Path(rest[1:] if rest.startswith("/") else rest).expanduser().absolute()


def _check_http(uri: str, timeout: float, mlflow_only: bool = True) -> None:
    """GET ``/health`` then the experiment search, through MLflow's own HTTP client with the credentials and TLS
    settings MLflow would use (the URI's user:password, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``,
    ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``), no retries and a short timeout. No
    answer is an error; with `mlflow_only`, so is an answer that is not MLflow's (any HTTP status is an answer
    otherwise: a read-only command then lets MLflow's client judge it)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking._tracking_service.utils import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    from xtuner.cluster.redact import redact_uri

    creds = get_default_host_creds(uri)
    problems = []
    for endpoint in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
        try:
            resp = http_request(creds, endpoint, "GET", max_retries=0, timeout=timeout, raise_on_status=False)
        except MlflowException as e:  # refused, timed out, TLS failed: nothing answered
            reason = redact_uri(str(e.message)).split(" failed with exception ", 1)[-1][:300]
            raise XtunerError(
                f"tracking server {redact_uri(uri)} does not answer ({reason}); start it (e.g. `mlflow server --host "
                "127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlflow.db`) or pass --tracking-uri "
                "sqlite:///mlflow.db"
            ) from None
        if not mlflow_only:
            return  # an answer, whatever it is
        if resp.status_code != 200:
            problems.append(f"{endpoint}: HTTP {resp.status_code}")
        elif endpoint == "/health" or _is_json(resp.content):
            return
        else:
            problems.append(f"{endpoint}: not JSON")
    raise XtunerError(f"tracking server {redact_uri(uri)} answers but is not an MLflow server: {'; '.join(problems)}")


def _is_json(content: bytes | None) -> bool:
    try:
        json.loads(content or b"{}")
    except ValueError:
        return False
    return True


def check_writable_dir(path: Path, what: str) -> None:
    """Create `path` if needed and prove it is writable by writing and removing a file there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".xtuner-write-check-", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise XtunerError(f"{what}: cannot write to {str(path)!r} ({e.strerror or e})") from None
