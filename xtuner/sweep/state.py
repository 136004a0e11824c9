"""The sweep's own record, ``<storage>/<name>/xtuner_sweep.json``: the spec, the MLflow parent run, and per trial
its MLflow child run, flat config, state, dev curve and final metrics.

It is written by the driver only after every trial event (atomically: temp file + ``os.replace`` locally, one PUT on an
object store), so it survives a killed driver. Storage may be a local folder or an ``s3://``/``gs://`` URI (pyarrow's
filesystems, as Tune uses them): `join`, `exists`, `read_text`, `write_text` and `remove_tree` cover both. `xtuner sweep resume` reuses the MLflow runs it names (trial id -> run id, no duplicates), and
`xtuner sweep status` and the end-of-sweep tables read it without Ray or MLflow.

Per trial the state also records where it last ran (``node_ip``, ``pid``) and how many failures Tune retried
(``failures``: a killed worker or a lost node; the retry resumes from the last checkpoint, same MLflow run).

Trial states: ``running``, ``done`` (final test metrics), ``pruned`` (stopped by the scheduler; keeps its dev
curve), ``nonfinite`` (NaN/inf loss, ended cleanly), ``error`` (crashed after its retries).

Tracking: ``tracked`` (per trial) and ``parent_tracked`` turn true once the child run / the parent run was written
to MLflow completely; ``tracking_pending`` (recomputed on every save) lists the finished trial ids, plus
``"parent"``, that MLflow still lacks, e.g. after the server went away mid-sweep. `xtuner sweep sync` writes them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xtuner.errors import XtunerError

STATE_FILE = "xtuner_sweep.json"
WEIGHTS = "weights"  # <sweep>/weights/<trial_id>/: kept weights (spec keep_weights; xtuner/trial/weights.py)
PREDICTIONS = "predictions"  # <sweep>/predictions/<trial_id>/: per-example test predictions (xtuner/trial/predictions.py)
# <storage>/_intermediate/<key>/: stage-1 results shared by the storage's sweeps (xtuner/intermediate/store.py);
# "_" never starts a sweep name, so no sweep folder can take this name
INTERMEDIATE = "_intermediate"
STATES = ("running", "done", "pruned", "nonfinite", "error")
FINISHED = ("done", "pruned", "nonfinite", "error")


@dataclass
class TrialRecord:
    trial_id: str
    group: str
    task: str
    method: str
    model: str
    seed: int
    main_metric: str
    params: dict[str, Any]  # the flat run_trial config
    searched: list[str]  # the keys that vary within the group
    state: str = "running"
    run_id: str | None = None
    dev_curve: list[list[float]] = field(default_factory=list)  # [epoch, main metric]
    last_step: float = -1.0  # the last dev point logged to MLflow (skip repeats after a resume)
    final: dict[str, float] = field(default_factory=dict)  # test/..., dev/..., params counts, seconds
    error: str | None = None
    started: int = 0  # how many times the trial was started (1 + restarts)
    reports: int = (
        0  # dev results received, repeats after a restart included (a resume from a checkpoint has none)
    )
    tracked: bool = False  # the child run is complete in MLflow (final metrics, CSV, tags, status)
    node_ip: str | None = None  # where the trial last reported from (Tune's node_ip and pid of its worker)
    pid: int | None = None
    failures: int = 0  # worker deaths / crashes that Tune retried from the last checkpoint (max_failures)
    weights: str | None = None  # where the trial kept its weights (spec keep_weights), or None
    intermediate_key: str | None = None  # the key of its stage-1 result (xtuner/intermediate), or None
    checkpoints: int = 0  # checkpoints Tune registered for the trial (a retry resumes from the last one)
    predictions: str | None = None  # where the trial wrote its per-example test predictions, or None
    train_loss: list[list[float]] = field(default_factory=list)  # [optimizer step, training loss]
    start_time: float | None = None  # when it (last) started and when it ended, seconds since the epoch
    end_time: float | None = None

    @property
    def best_dev(self) -> float | None:
        key = f"dev/en/{self.main_metric}"
        if key in self.final:
            return self.final[key]
        values = [v for _, v in self.dev_curve]
        return max(values) if values else None

    def searched_values(self) -> dict[str, Any]:
        return {k: self.params[k] for k in self.searched if k in self.params}


@dataclass
class SweepState:
    name: str
    spec: dict[str, Any]
    tracking_uri: str | None = None
    experiment_id: str | None = None
    parent_run_id: str | None = None
    trials: dict[str, TrialRecord] = field(default_factory=dict)
    finished: bool = False
    parent_tracked: bool = False  # the parent run was closed in MLflow (best configs, summary)
    tracking_pending: list[str] = field(default_factory=list)  # derived: `pending()` at the last save

    @classmethod
    def load(cls, path: str | Path) -> SweepState:
        """The state in `path`; one XtunerError naming the file and the key for anything that is not a state file
        this version wrote (not JSON or UTF-8, not an object, a missing, unknown or mistyped key, an unknown trial
        state)."""
        where = f"sweep state {str(path)!r}"
        try:
            raw = json.loads(read_text(str(path)))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise XtunerError(f"cannot read the {where}: {e}") from None
        return cls.from_dict(raw, where)

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> SweepState:
        _check_fields(cls, raw, where)
        trials = raw.get("trials", {})
        if not isinstance(trials, dict):
            raise XtunerError(f"{where}: key 'trials': expected an object of trial id -> record, got {_kind(trials)}")
        records = {}
        for tid, rec in trials.items():
            at = f"{where}: trials.{tid}"
            _check_fields(TrialRecord, rec, at)
            if rec.get("state", "running") not in STATES:
                raise XtunerError(f"{at}: key 'state': unknown trial state {rec['state']!r}; valid: {', '.join(STATES)}")
            records[tid] = TrialRecord(**rec)
        return cls(**{k: v for k, v in raw.items() if k != "trials"}, trials=records)

    def save(self, path: str | Path) -> None:
        """Written redacted (`xtuner.cluster.redact.redact`): a password in the tracking URI or the spec never reaches
        the file; `resume` and `sync` ask for it again (see `xtuner.sweep.runner.tracking_uri_for`)."""
        self.tracking_pending = self.pending()
        write_text(str(path), json.dumps(redacted(asdict(self)), indent=1, sort_keys=True, default=str))

    def pending(self) -> list[str]:
        """Finished trials (and ``"parent"`` once the sweep finished) not yet written to MLflow completely."""
        if not self.tracking_uri:
            return []
        out = [tid for tid, r in sorted(self.trials.items()) if r.state in FINISHED and not r.tracked]
        return out + (["parent"] if self.finished and not self.parent_tracked else [])

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for rec in self.trials.values():
            out[rec.state] += 1
        return out


# fields of a trial record that identify or classify it; never passed through the masking of registered secrets
# (a password "done" or "test" must not turn a trial's state or its eval_split into "***")
RECORD_KEYS_KEPT = ("trial_id", "group", "task", "method", "model", "seed", "main_metric", "searched", "state",
                    "run_id", "node_ip", "pid", "intermediate_key")  # fmt: skip


def redacted(state: dict[str, Any]) -> dict[str, Any]:
    """`state` (``asdict`` of a SweepState) with secrets masked (`xtuner.cluster.redact.redact`), except the
    trial records' identifying fields and their unmaskable params (`xtuner.trial.config.unmaskable_settings`),
    which the masking of a short password could only corrupt."""
    from xtuner.cluster.redact import redact
    from xtuner.trial.config import unmaskable_settings

    out = redact(state)
    for tid, rec in state.get("trials", {}).items():
        out["trials"][tid].update({k: rec[k] for k in RECORD_KEYS_KEPT if k in rec})
        out["trials"][tid]["params"].update(unmaskable_settings(rec.get("params", {})))
    return out


_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict, "list": list}


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


def _check_fields(cls: type, raw: Any, where: str) -> None:
    """`raw` is an object whose keys are fields of the dataclass `cls`, with every required one present and every
    value of the field's JSON type (None allowed where the field is optional)."""
    import dataclasses
    import typing

    if not isinstance(raw, dict):
        raise XtunerError(f"{where}: expected an object (a state file xtuner wrote), got {_kind(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise XtunerError(f"{where}: unknown key {key!r} (not a state file of this xtuner version?)")
    hints = typing.get_type_hints(cls)
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in raw:
            if required:
                raise XtunerError(f"{where}: missing key {name!r}")
            continue
        value, hint = raw[name], hints[name]
        args = typing.get_args(hint)
        optional = type(None) in args
        base = typing.get_origin(hint) or hint
        if optional:
            base = next(a for a in args if a is not type(None))
            base = typing.get_origin(base) or base
        if value is None and optional:
            continue
        expected = _TYPES.get(getattr(base, "__name__", ""), object)
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool) and base is not bool):
            raise XtunerError(f"{where}: key {name!r}: expected {getattr(base, '__name__', base)}, got {_kind(value)}")


def find_sweep_dir(name_or_path: str, storage: str | None = None) -> str:
    """A sweep folder from a path or URI (the folder or its state file) or a name under `storage` (default
    ./xtuner_results)."""
    candidates = [
        name_or_path.removesuffix("/" + STATE_FILE),
        join(storage or "./xtuner_results", name_or_path),
    ]
    for c in candidates:
        if exists(join(c, STATE_FILE)):
            return c if is_remote(c) else str(Path(local_path(c)).expanduser().resolve())
    tried = ", ".join(repr(c) for c in candidates)
    raise XtunerError(
        f"no sweep {name_or_path!r} found (looked for {STATE_FILE} in {tried}); pass its folder or --storage"
    )


# ------------------------------------------------------------------------------------------------ storage access
def is_remote(path: str) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def _remote(uri: str):
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(uri)  # (filesystem, path inside it)


def local_path(location: str) -> str:
    """The local path of a plain path or a ``file://`` URI: ``file:///abs``, ``file://localhost/abs`` and
    ``file://user:password@localhost/abs`` all name ``/abs`` (what `check_storage` makes of them for a sweep), so
    `status`, `list` and `sync` find a sweep under the same ``--storage`` that ran it."""
    if not str(location).startswith("file://"):
        return str(location)
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(str(location)).path) or "/"


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return "/".join([base.rstrip("/"), *parts])
    return str(Path(local_path(base)).expanduser().joinpath(*parts))


def sweep_folder(storage: str, name: str) -> str:
    """``<storage>/<name>``, refusing (XtunerError) a result outside the storage root, e.g. through a symlink
    named like the sweep (`xtuner.cluster.redact.safe_join`; names are already plain: ``NAME_PATTERN``)."""
    from xtuner.cluster.redact import safe_join, safe_join_uri

    if is_remote(storage):
        return safe_join_uri(storage, name)
    return str(safe_join(local_path(storage), name))


def parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] if is_remote(path) else str(Path(local_path(path)).parent)


def exists(path: str) -> bool:
    if not is_remote(path):
        return Path(local_path(path)).expanduser().exists()
    import pyarrow.fs as pafs

    fs, p = _remote(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def read_text(path: str) -> str:
    if not is_remote(path):
        return Path(local_path(path)).expanduser().read_text()
    fs, p = _remote(path)
    with fs.open_input_stream(p) as f:
        return f.read().decode()


def write_text(path: str, text: str) -> None:
    """Atomic: a temp file renamed over the target (local), or a single PUT (object stores)."""
    if is_remote(path):
        fs, p = _remote(path)
        with fs.open_output_stream(p) as f:
            f.write(text.encode())
        return
    target = Path(local_path(path)).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename: a full disk fails here, not later
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # a full disk leaves no half-written temp file behind
        raise


def remove_tree(path: str) -> None:
    if is_remote(path):
        fs, p = _remote(path)
        fs.delete_dir(p)
    else:
        shutil.rmtree(Path(local_path(path)).expanduser(), ignore_errors=True)


def list_names(path: str) -> list[str]:
    """Names of the entries directly inside a folder (empty when it does not exist)."""
    if not is_remote(path):
        folder = Path(local_path(path)).expanduser()
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    import pyarrow.fs as pafs

    fs, p = _remote(path)
    infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    return sorted(i.base_name for i in infos)
