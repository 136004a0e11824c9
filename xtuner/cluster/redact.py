"""Keep secrets out of what xtuner prints or logs, and keep output paths inside their storage root.

`redact_params` replaces the value of every key that names a secret with ``"***"`` (recursively through dicts and
lists) and masks the password of ``scheme://user:password@host`` URIs in any string value. A key names a secret when
one of its words is a secret word. Words come from splitting the key on ``_ - . /`` and space and at camelCase
boundaries. A word is a secret word when it is one of token, password, passwd, pwd, secret, key, or ends in one of
token, secret, password, apikey, accesskey, privatekey (``authtoken``, ``clientsecret``, ``dbpassword``). Matching
whole words instead of raw substrings keeps ``tokenizer``, ``max_tokens``, ``keyboard`` or ``psl`` visible, while
``api_key``, ``HF_TOKEN``, ``MLFLOW_TRACKING_PASSWORD``, ``aws_secret_access_key`` and ``clientSecret`` are hidden.

One redaction at every boundary: `redact_text` masks URI passwords and every *registered* secret value (passwords
found in URIs of the spec or the command line, values of secret-named spec keys and environment variables, see
`register_secrets_in` / `register_env_secrets`), in any text. `redact` applies the key rules and `redact_text` to a
whole structure. What leaves a driver goes through them: the CLI's stdout and stderr (`RedactingStream`, which also
covers Ray's, MLflow's and Python's own messages and tracebacks), the sweep state file and spec copy, MLflow params,
tags and text artifacts.

`safe_join(root, relative)` returns ``root/relative`` and raises XtunerError when the result would leave ``root``
(an absolute path, ``..`` parts, or a symlink that points outside). `safe_join_uri` does the same for
``s3://`` and ``gs://`` roots, which have no symlinks but do have ``..`` parts.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, TextIO
from urllib.parse import unquote

from xtuner.errors import XtunerError

MASK = "***"
SECRET_WORDS = frozenset(
    {"token", "password", "passwd", "pwd", "secret", "key", "apikey", "credential", "credentials"}
)
SECRET_SUFFIXES = ("token", "secret", "password", "apikey", "accesskey", "privatekey")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[_\-./\s]+")
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)(?P<pw>[^@/\s]+)(?P<at>@)")


def key_words(key: str) -> list[str]:
    """``awsSecretAccessKey`` -> [aws, secret, access, key]; ``MLFLOW_TRACKING_PASSWORD`` -> [mlflow, tracking, password]."""
    return [w.lower() for part in _SPLIT.split(str(key)) for w in _CAMEL.split(part) if w]


def is_secret_key(key: str) -> bool:
    return any(w in SECRET_WORDS or w.endswith(SECRET_SUFFIXES) for w in key_words(key))


def redact_uri(text: str) -> str:
    """Mask the password part of ``scheme://user:password@host...`` URIs inside `text`."""
    return _URI_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", text)


def redact_params(d: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `d` with secret-looking keys' values replaced by ``"***"``, URI passwords and registered secrets
    masked."""
    return {k: (MASK if is_secret_key(k) and v not in (None, "") else redact(v)) for k, v in d.items()}


def redact(v: Any) -> Any:
    """`v` with every string passed through `redact_text` and secret-named keys masked (dicts, lists, tuples)."""
    if isinstance(v, Mapping):
        return redact_params(v)
    if isinstance(v, list | tuple):
        return type(v)(redact(x) for x in v)
    if isinstance(v, str):
        return redact_text(v)
    return v


# ------------------------------------------------------------------------------------------------ known secrets
_SECRETS: set[str] = set()
MIN_SECRET = 4  # shorter values are not masked inside free text (they would mangle ordinary words)
MIN_ENV_SECRET = 8  # environment values: longer, so that flags such as "true" are never taken for secrets


def register_secret(value: Any, min_length: int = MIN_SECRET) -> None:
    """Mask `value` (and its URL-decoded form) wherever it appears in text from now on (this process)."""
    if isinstance(value, str) and len(value) >= min_length and value != MASK:
        _SECRETS.update(v for v in (value, unquote(value)) if len(v) >= min_length)


def register_secrets_in(value: Any) -> None:
    """Register the URI passwords in every string of `value` and the values of its secret-named keys."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if is_secret_key(str(k)) and isinstance(v, str):
                register_secret(v)
            register_secrets_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            register_secrets_in(v)
    elif isinstance(value, str):
        for m in _URI_PASSWORD.finditer(value):
            register_secret(m["pw"])


NOT_SECRET_ENV = frozenset({"PWD", "OLDPWD"})  # "pwd" is a password word, but these are the shell's folders


def register_env_secrets(environ: Mapping[str, str] | None = None) -> None:
    """Register the values of secret-named environment variables (MLFLOW_TRACKING_PASSWORD, AWS_SECRET_ACCESS_KEY,
    HF_TOKEN, ...). Values that name an existing file or folder (GOOGLE_APPLICATION_CREDENTIALS, RAY_AUTH_TOKEN_PATH)
    are paths to secrets, not secrets, and stay visible."""
    for k, v in (os.environ if environ is None else environ).items():
        if is_secret_key(k) and k not in NOT_SECRET_ENV and not os.path.exists(v):
            register_secret(v, MIN_ENV_SECRET)


def redact_text(text: str) -> str:
    """`text` with URI passwords and every registered secret replaced by ``***``."""
    out = redact_uri(text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in out:
            out = out.replace(secret, MASK)
    return out


def registered_secrets() -> Iterable[str]:
    return frozenset(_SECRETS)


class RedactingStream:
    """A text stream that passes everything written through `redact_text` (the CLI's stdout and stderr)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact_text(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# ------------------------------------------------------------------------------------------------ paths
def _check_relative(relative: str | Path, root: str) -> PurePosixPath:
    text = str(relative)
    if not text or "\x00" in text:
        raise XtunerError(f"output path {text!r} under {root!r}: empty or contains a NUL byte")
    rel = PurePosixPath(text.replace("\\", "/"))
    if rel.is_absolute() or re.match(r"^[A-Za-z]:", text):
        raise XtunerError(
            f"output path {text!r} is absolute; it must be relative to the storage root {root!r}"
        )
    if ".." in rel.parts:
        raise XtunerError(f"output path {text!r} contains '..' and could leave the storage root {root!r}")
    return rel


def safe_join(root: str | Path, relative: str | Path) -> Path:
    """``root / relative``, refusing (XtunerError) any result outside `root`, symlinks resolved."""
    root_path = Path(root).expanduser()
    rel = _check_relative(relative, str(root_path))
    base = root_path.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise XtunerError(
            f"output path {str(relative)!r} resolves to {str(target)!r}, outside the storage root {str(base)!r}"
        )
    return target


def safe_join_uri(root: str, relative: str) -> str:
    """``root/relative`` for an object-store root such as ``s3://bucket/sweeps``, refusing escapes."""
    scheme, sep, rest = root.partition("://")
    if not sep or not rest.strip("/"):
        raise XtunerError(f"storage root {root!r} is not a URI of the form scheme://bucket[/prefix]")
    rel = _check_relative(relative, root)
    joined = posixpath.normpath(posixpath.join(rest.rstrip("/"), str(rel)))
    return f"{scheme}://{joined}"
