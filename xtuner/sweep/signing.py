"""Resume trusts only what the user wrote: HMAC-SHA256 over every file Tune unpickles on a resume, with a per-user
key kept outside the storage.

A sweep folder holds pickles: Tune's ``tuner.pkl`` (the Tuner, its search algorithm, scheduler and run config),
``experiment_state-*.json`` (trial records with embedded cloudpickle blobs), the search algorithm's
``search_gen_state-*.json`` / ``basic-variant-state-*.json`` (cloudpickle despite the name) and
``searcher-state-*.pkl`` (for Optuna, `xtuner.sweep.tune_search.GroupedSearch`'s own pickle), ``callback-states-*.pkl``,
and ``trial_*/error.pkl`` (a failed trial's exception, read when Tune builds its results). Unpickling runs code, so
whoever can write the folder (shared storage) could run code as the next user who resumes it.

- **Key**: ``$XTUNER_HOME/signing.key``, default ``~/.config/xtuner/signing.key``; 32 random bytes (hex), created on
  first use with mode 0600 in a 0700 folder, never stored with a sweep. A key file that other users can read or
  write is refused.
- **Signatures**: ``<sweep>/.xtuner_signatures``, JSON (never unpickled): per file path relative to the sweep folder,
  the HMACs of its last `KEEP` contents.
- **When**: ``tuner.pkl`` right after Tune writes it (`sign_files`, before ``fit``). Tune writes everything else into
  its driver staging folder and then uploads that folder to the sweep folder; `xtuner.sweep.tune.EventsCallback`
  signs the staged files in between (`sign_staged`), before the upload starts. Because earlier HMACs are kept, a
  driver killed during an upload leaves files that each match a signature, old or new, and its own resume works.
- **Check**: `verify` runs before anything of the folder is unpickled (`xtuner sweep resume`): every file Tune may
  unpickle (`pickled_files`) must match an HMAC recorded for its path, else one XtunerError naming the files and the
  override, ``--trust-folder`` (`trusting`), which also signs the folder's files so that later resumes need no flag.
- **Not signed**: trial checkpoints. Workers load them with safetensors and ``torch.load(weights_only=True)``
  (transformers' Trainer) and JSON, none of which runs code; their weights are trusted like any model folder.

`dumps` / `loads` sign one pickle inline (HMAC + payload), for pickles xtuner writes itself (GroupedSearch).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import hmac
import json
import os
import pickle
import secrets
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from xtuner.errors import XtunerError

SIGNATURES = ".xtuner_signatures"
KEY_FILE = "signing.key"
KEEP = 4  # HMACs kept per file: the current content and the few before it (an upload cut short)
PICKLED = ("*.pkl", "*.json", "trial_*/*.pkl")  # relative to the sweep folder
NOT_PICKLED = ("xtuner_sweep.json",)  # xtuner's own JSON, read with json.loads
_MAGIC = b"xtuner-hmac-v1\n"

_override = False  # inside `trusting`: a folder the user vouched for (also read by GroupedSearch.restore)


def key_path() -> Path:
    home = os.environ.get("XTUNER_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".config" / "xtuner") / KEY_FILE


def load_key(create: bool = True) -> bytes:
    """The user's key, created on first use; XtunerError for a key others can read or a broken key file."""
    path = key_path()
    if not path.exists():
        if not create:
            raise XtunerError(f"no signing key at {path}")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_key(create=False)  # another process made it a moment ago
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise XtunerError(f"signing key {path} is readable or writable by other users (mode {stat.filemode(mode)}); "
                          f"run `chmod 600 {path}`")  # fmt: skip
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as e:
        raise XtunerError(f"signing key {path} is unreadable ({e}); delete it to make a new one (sweeps signed "
                          "with it then need --trust-folder once)") from None  # fmt: skip
    if len(key) < 16:
        raise XtunerError(f"signing key {path} is too short; delete it to make a new one")
    return key


def mac(data: bytes, key: bytes | None = None) -> str:
    return hmac.new(key or load_key(), data, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------------------------------------ inline pickles
def dumps(obj: Any) -> bytes:
    payload = pickle.dumps(obj)
    return _MAGIC + mac(payload).encode() + b"\n" + payload


def loads(data: bytes, where: str) -> Any:
    """Unpickle `data` only if its HMAC is the user's (or the folder is trusted with --trust-folder)."""
    if data.startswith(_MAGIC):
        digest, _, payload = data[len(_MAGIC) :].partition(b"\n")
        ok = hmac.compare_digest(digest, mac(payload).encode())
    else:
        payload, ok = data, False
    if not ok and not _override:
        raise XtunerError(f"{where} is not signed with your key; refusing to unpickle it (--trust-folder to override)")
    return pickle.loads(payload)  # noqa: S301 - verified above, or trusted by the user


# ------------------------------------------------------------------------------------------------ folders
def pickled_files(folder: str) -> list[str]:
    """Paths (relative to the sweep folder) of the files Tune may unpickle on a resume."""
    from xtuner.sweep.state import is_remote

    if is_remote(folder):
        names = _remote_listing(folder)
    else:
        root = Path(folder)
        names = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and
                 len(p.relative_to(root).parts) <= 2]  # fmt: skip
    return sorted(n for n in names if any(fnmatch.fnmatchcase(n, pat) and n.count("/") == pat.count("/")
                                          for pat in PICKLED) and n not in NOT_PICKLED)  # fmt: skip


def sign_files(sweep_dir: str, names: Iterable[str], base: str | None = None) -> None:
    """Record the HMACs of `names` (read from `base`, default the sweep folder) in the sweep's signatures."""
    key = load_key()
    sigs = _load_signatures(sweep_dir)
    changed = False
    for name in names:
        try:
            data = _read(_join(base or sweep_dir, name))
        except FileNotFoundError:
            continue
        digest = mac(data, key)
        kept = sigs.setdefault(name, [])
        if digest not in kept:
            kept.append(digest)
            del kept[:-KEEP]
            changed = True
    if changed:
        _save_signatures(sweep_dir, sigs)


def sign_staged(sweep_dir: str, staging_dir: str) -> None:
    """Sign the files Tune staged for upload into `sweep_dir` (called before the upload starts)."""
    sign_files(sweep_dir, pickled_files(staging_dir), base=staging_dir)


def verify(sweep_dir: str) -> None:
    """Raise XtunerError unless every file of `sweep_dir` that Tune may unpickle carries the user's HMAC."""
    if _override:
        return
    key = load_key()
    sigs = _load_signatures(sweep_dir, fresh=True)
    bad = []
    for name in pickled_files(sweep_dir):
        if mac(_read(_join(sweep_dir, name)), key) not in sigs.get(name, []):
            bad.append(name)
    if bad:
        shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
        why = "the folder has no signatures (written by an older xtuner, or by hand)" if not sigs else \
            "changed after your xtuner wrote them, or written by another user or machine (another key)"  # fmt: skip
        raise XtunerError(f"sweep folder {sweep_dir}: {shown} {'is' if len(bad) == 1 else 'are'} not signed with your "
                          f"key ({key_path()}): {why}. Resuming would unpickle {'it' if len(bad) == 1 else 'them'}, "
                          "which runs code. If you trust every writer of this folder, resume with --trust-folder")  # fmt: skip


@contextlib.contextmanager
def trusting(sweep_dir: str) -> Iterator[None]:
    """The user vouches for `sweep_dir` (--trust-folder): its files are signed with the user's key now (so the next
    resume needs no flag), and the checks are off until the block ends (GroupedSearch.restore included)."""
    global _override
    sign_files(sweep_dir, pickled_files(sweep_dir))
    _override = True
    try:
        yield
    finally:
        _override = False


# ------------------------------------------------------------------------------------------------ storage
def _join(base: str, name: str) -> str:
    from xtuner.sweep.state import join

    return join(base, *name.split("/"))


def _read(path: str) -> bytes:
    from xtuner.sweep.state import is_remote

    if not is_remote(path):
        return Path(path).read_bytes()
    import pyarrow.fs as pafs

    fs, p = pafs.FileSystem.from_uri(path)
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        raise FileNotFoundError(path)
    with fs.open_input_stream(p) as f:
        return f.read()


def _remote_listing(folder: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, p = pafs.FileSystem.from_uri(folder)
    base = p.rstrip("/") + "/"
    infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True, recursive=True))
    names = [i.path[len(base) :] for i in infos if i.type == pafs.FileType.File and i.path.startswith(base)]
    return [n for n in names if n.count("/") <= 1]


_cache: dict[str, dict[str, list[str]]] = {}  # the driver holds the sweep's lock: it is the only writer


def _load_signatures(sweep_dir: str, fresh: bool = False) -> dict[str, list[str]]:
    """The folder's signatures; read once per process and folder (every Tune checkpoint signs: on an object store
    that saves a GET each time), or again with `fresh` (verification)."""
    from xtuner.sweep.state import exists, read_text

    if not fresh and sweep_dir in _cache:
        return _cache[sweep_dir]
    path = _join(sweep_dir, SIGNATURES)
    if not exists(path):
        _cache[sweep_dir] = {}
        return _cache[sweep_dir]
    try:
        raw = json.loads(read_text(path))
        files = raw["files"]
        if not isinstance(files, dict) or not all(isinstance(v, list) for v in files.values()):
            raise ValueError("'files' is not an object of lists")
        _cache[sweep_dir] = {str(k): [str(d) for d in v] for k, v in files.items()}
        return _cache[sweep_dir]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise XtunerError(f"signatures {path} are unreadable ({e}); if you trust the folder, resume with "
                          "--trust-folder (it writes new ones)") from None  # fmt: skip


def _save_signatures(sweep_dir: str, sigs: dict[str, list[str]]) -> None:
    from xtuner.sweep.state import write_text

    write_text(_join(sweep_dir, SIGNATURES), json.dumps({"version": 1, "files": sigs}, indent=1, sort_keys=True))
    _cache[sweep_dir] = sigs
