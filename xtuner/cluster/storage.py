"""Prove, before a sweep starts, that its storage URI can be written: a local folder, ``s3://`` or ``gs://``.

Local paths (and ``file://``) must be a folder that exists or can be created, and that accepts a small file.
Object stores go through pyarrow's filesystems (what Ray Tune uses for ``storage_path``):
``pyarrow.fs.FileSystem.from_uri`` then a tiny write probe (write, read back, delete). The whole probe runs in a
daemon thread with a hard deadline, because the AWS and Google SDKs retry and walk their credential chains
(environment, config files, the instance metadata service) for a long time when nothing answers. Every failure is
one XtunerError that names the URI, says whether it looks like a credential problem, and how to fix it.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

from xtuner.cluster.redact import redact_uri
from xtuner.errors import XtunerError

OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs")
PROBE_NAME = ".xtuner-write-probe-"
_CREDENTIAL_HINTS = ("credential", "access_denied", "accessdenied", "access denied", "forbidden", "403", "401",
                     "invalidaccesskeyid", "signaturedoesnotmatch", "expiredtoken", "unauthorized",
                     "no valid credentials", "could not load default credentials", "permission")  # fmt: skip
_FIX = {
    "s3": "on AWS give the nodes an instance profile (IAM role) allowing s3:ListBucket, s3:PutObject, s3:GetObject "
    "and s3:DeleteObject on the bucket; elsewhere set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in "
    "the environment (never in a spec or cluster.yaml)",
    "gs": "on GCP give the nodes a service account with roles/storage.objectAdmin on the bucket; elsewhere run "
    "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS to a key file",
}


def check_storage(uri: str, *, timeout: float = 20.0) -> str:
    """Raise XtunerError unless `uri` can be written within `timeout` seconds; return it normalised.

    Local paths come back absolute (user folder expanded, created if missing); object-store URIs unchanged."""
    if not isinstance(uri, str) or not uri.strip():
        raise XtunerError("storage: empty URI; give a folder or an s3:// or gs:// URI")
    uri = uri.strip()
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):  # drive letters on Windows
        path = Path(unquote(parsed.path) if scheme == "file" else uri).expanduser().absolute()  # as local_path
        _check_local(path, uri)
        return str(path)
    if scheme not in OBJECT_STORE_SCHEMES:
        raise XtunerError(f"storage {redact_uri(uri)!r}: unsupported scheme {scheme!r}; use a local folder, "
                          "s3://bucket/prefix or gs://bucket/prefix")  # fmt: skip
    if not parsed.netloc or "@" in parsed.netloc or "://" in uri[len(scheme) + 3 :]:
        raise XtunerError(f"storage {redact_uri(uri)!r}: malformed URI; expected {scheme}://bucket/prefix "
                          "(credentials never go in the URI)")  # fmt: skip
    _probe_object_store(uri, "gs" if scheme == "gcs" else scheme, timeout)
    return uri


def _check_local(path: Path, uri: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=PROBE_NAME, dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise XtunerError(f"storage {redact_uri(uri)!r}: cannot write to {str(path)!r} ({e.strerror or e})") from None


def _probe_object_store(uri: str, kind: str, timeout: float) -> None:
    outcome: dict[str, BaseException | None] = {}

    def probe() -> None:
        try:
            import pyarrow.fs as pafs

            fs, path = pafs.FileSystem.from_uri(uri)
            target = f"{path.rstrip('/')}/{PROBE_NAME}{uuid.uuid4().hex}"
            with fs.open_output_stream(target) as out:
                out.write(b"ok")
            with fs.open_input_stream(target) as inp:
                if inp.read() != b"ok":
                    raise OSError("the probe file read back differently from what was written")
            fs.delete_file(target)
            outcome["error"] = None
        except BaseException as e:  # noqa: BLE001 - reported to the caller below
            outcome["error"] = e

    thread = threading.Thread(target=probe, name="xtuner-storage-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    shown = redact_uri(uri)
    if thread.is_alive():
        raise XtunerError(f"storage {shown!r}: no answer within {timeout:g} s (no network route to the object "
                          f"store, or the SDK is still looking for credentials); to fix: {_FIX[kind]}")  # fmt: skip
    error = outcome.get("error")
    if error is None:
        return
    reason = redact_uri(" ".join(str(error).split()))[:400]
    if isinstance(error, ValueError | TypeError) or "unrecognized" in reason.lower():
        raise XtunerError(f"storage {shown!r}: not a valid {kind}:// URI ({reason})")
    if any(h in reason.lower() for h in _CREDENTIAL_HINTS):
        raise XtunerError(
            f"storage {shown!r}: no valid credentials or access denied ({reason}); to fix: {_FIX[kind]}"
        )
    raise XtunerError(f"storage {shown!r}: cannot write a probe file ({reason}); check the bucket name and region "
                      f"and the network route; credentials: {_FIX[kind]}")  # fmt: skip
