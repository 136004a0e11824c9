"""Keep secrets out of what xtuner prints or logs, and keep output paths inside their storage root.

`redact_params` replaces the value of every key that names a secret with ``"***"`` (recursively through dicts and
lists) and masks the password of ``scheme://user:password@host`` URIs in any string value. A key names a secret when
one of its words is a secret word. Words come from splitting the key on ``_ - . /`` and space and at camelCase
boundaries. A word is a secret word when it is one of token, password, passwd, pwd, secret, key, or ends in one of
token, secret, password, apikey, accesskey, privatekey (``authtoken``, ``clientsecret``, ``dbpassword``). Matching
whole words instead of raw substrings keeps ``tokenizer``, ``max_tokens``, ``keyboard`` or ``psl`` visible, while
``api_key``, ``HF_TOKEN``, ``MLFLOW_TRACKING_PASSWORD``, ``aws_secret_access_key`` and ``clientSecret`` are hidden.

`safe_join(root, relative)` returns ``root/relative`` and raises XtunerError when the result would leave ``root``
(an absolute path, ``..`` parts, or a symlink that points outside). `safe_join_uri` does the same for
``s3://`` and ``gs://`` roots, which have no symlinks but do have ``..`` parts.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

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
    """A copy of `d` with secret-looking keys' values replaced by ``"***"`` and URI passwords masked."""
    return {k: (MASK if is_secret_key(k) and v not in (None, "") else _redact_value(v)) for k, v in d.items()}


def _redact_value(v: Any) -> Any:
    if isinstance(v, Mapping):
        return redact_params(v)
    if isinstance(v, list | tuple):
        return type(v)(_redact_value(x) for x in v)
    if isinstance(v, str):
        return redact_uri(v)
    return v


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
