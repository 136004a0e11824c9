"""Protocol presets: a reference's training recipe as named, versioned, cited settings (``protocol: mpt``).

A protocol is data: for each (task, method) it covers, the settings of the reference's own scripts, each with the
file and line it comes from (:class:`Setting`). :func:`resolve` turns a flat trial config that names a protocol
into the full flat config: the preset fills every setting the config does not give, a setting given explicitly
wins, and the result records ``protocol_version`` and ``protocol_overrides`` (the preset settings the config
changed). The resolved dict is what a trial runs and what MLflow logs as params, so a run names its protocol and
every setting it resolved to. Resolving twice gives the same dict.

Protocols register themselves in their own module (``mpt.py``, ``xtreme.py``) with :func:`register_protocol`;
other packages register through the ``xtuner.protocols`` entry-point group. ``docs/fidelity.md`` holds the
table that :func:`markdown_table` renders from these records (a test keeps the two in step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from xtuner.errors import XtunerError
from xtuner.registry import Registry

PROTOCOL_KEYS = ("protocol", "protocol_version", "protocol_overrides")


class _Required:
    """The value of a setting the reference takes from its command line (e.g. the fine-tuning lr): a spec that
    uses the protocol must give it."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Setting:
    """One preset value and where it comes from: ``file:line`` in the protocol's repository ("" = not set by the
    reference, a library default, explained in `note`)."""

    value: Any
    source: str = ""
    note: str = ""


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    title: str
    repo: str  # GitHub owner/name the sources are in
    commits: Mapping[str, str]  # file -> the commit its lines were read at
    entries: Mapping[str, Mapping[str, Mapping[str, Setting]]]  # task -> method -> setting -> Setting
    model: str = "xlm-roberta-large"  # the model the recipe was written for
    notes: tuple[str, ...] = field(default_factory=tuple)

    def covers(self) -> list[tuple[str, str]]:
        return sorted((t, m) for t, methods in self.entries.items() for m in methods)

    def settings(self, task: str, method: str) -> Mapping[str, Setting]:
        """The preset settings of one (task, method); an uncovered pair is an XtunerError naming what is covered."""
        if task not in self.entries:
            raise XtunerError(
                f"protocol {self.name!r} has no settings for task {task!r} (it covers "
                f"{', '.join(sorted(self.entries))}); set protocol: null for this task and give its settings"
            )
        if method not in self.entries[task]:
            raise XtunerError(
                f"protocol {self.name!r} has no settings for method {method!r} on task {task!r} (it covers "
                f"{', '.join(sorted(self.entries[task]))} there)"
            )
        return self.entries[task][method]

    def url(self, source: str) -> str:
        """``file:line`` -> a permanent GitHub link at the commit the line was read at."""
        path, _, line = source.partition(":")
        commit = self.commits.get(path, "main")
        return f"https://github.com/{self.repo}/blob/{commit}/{path}" + (f"#L{line}" if line else "")


PROTOCOLS: Registry[Protocol] = Registry(
    "protocol", package=__name__, path=__path__, group="xtuner.protocols"
)


def register_protocol(protocol: Protocol) -> Protocol:
    return PROTOCOLS.add(protocol.name, protocol)


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name)


def protocol_names() -> list[str]:
    return PROTOCOLS.names()


def resolve(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`flat` with its protocol's settings filled in (see the module doc); unchanged when it names none."""
    name = flat.get("protocol")
    out = {k: v for k, v in flat.items() if k not in ("protocol_version", "protocol_overrides")}
    if name is None or name == "":
        if flat.get("protocol_version") is not None:
            raise XtunerError("protocol_version is set but no protocol: name the protocol it pins")
        return out
    if not isinstance(name, str):
        raise XtunerError(f"protocol: expected a protocol name, got {name!r}")
    proto = get_protocol(name)
    pinned = flat.get("protocol_version")
    if pinned is not None and str(pinned) != str(proto.version):
        raise XtunerError(
            f"protocol {name!r} is at version {proto.version}, the config pins version {pinned}: compare "
            "docs/fidelity.md with the run that used the old version, then update or drop protocol_version"
        )
    task, method = flat.get("task"), flat.get("method", "finetune")
    settings = proto.settings(str(task), str(method))
    explicit = {k: v for k, v in out.items() if k != "method_settings"}
    explicit.update(flat.get("method_settings") or {})  # as TrialConfig.from_flat: method_settings win
    missing = [k for k, s in settings.items() if s.value is REQUIRED and k not in explicit]
    if missing:
        where = "; ".join(f"{k}: {settings[k].source} ({settings[k].note})" for k in missing)
        raise XtunerError(
            f"protocol {name!r} leaves {', '.join(missing)} to the spec for {task} / {method}, as the reference "
            f"takes it from the command line ({where}): set it (a value or a list)"
        )
    preset = {k: s.value for k, s in settings.items() if s.value is not REQUIRED}
    overrides = sorted(k for k, v in preset.items() if k in explicit and explicit[k] != v)
    resolved = {**{k: v for k, v in preset.items() if k not in explicit}, **out}
    resolved.update(protocol_version=proto.version, protocol_overrides=overrides)
    return resolved


def _fmt(value: Any) -> str:
    if value is REQUIRED:
        return "*from the spec*"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}".replace("e-0", "e-")
    return str(value)


TASK_ORDER = ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa")


def _task_order(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER), task)


def markdown_table(proto: Protocol) -> str:
    """The fidelity table of one protocol: per method, one row per setting and one column per task (tasks with the
    same settings share a column); each cell is the value and its source line, the notes column explains them."""
    out = []
    methods = sorted({m for per_task in proto.entries.values() for m in per_task})
    for method in methods:
        columns: list[tuple[list[str], Mapping[str, Setting]]] = []
        for task in sorted((t for t in proto.entries if method in proto.entries[t]), key=_task_order):
            entry = proto.entries[task][method]
            same = next((c for c in columns if c[1] == entry), None)
            if same is None:
                columns.append(([task], entry))
            else:
                same[0].append(task)
        keys = list(dict.fromkeys(k for _, entry in columns for k in entry))
        out.append(f"#### `{proto.name}` v{proto.version}, `{method}`\n")
        out.append("| setting | " + " | ".join(", ".join(tasks) for tasks, _ in columns) + " | notes |")
        out.append("|---" * (len(columns) + 2) + "|")
        for key in keys:
            cells, notes = [], []
            for _, entry in columns:
                s = entry.get(key)
                if s is None:
                    cells.append("-")
                    continue
                src = f" ([{s.source.rsplit('/', 1)[-1]}]({proto.url(s.source)}))" if s.source else ""
                cells.append(f"{_fmt(s.value)}{src}")
                if s.note and s.note not in notes:
                    notes.append(s.note)
            note = "; ".join(notes).replace("|", "\\|")
            out.append(f"| `{key}` | " + " | ".join(cells) + f" | {note} |")
        out.append("")
    return "\n".join(out)


__all__ = [
    "PROTOCOLS",
    "PROTOCOL_KEYS",
    "REQUIRED",
    "Protocol",
    "Setting",
    "get_protocol",
    "markdown_table",
    "protocol_names",
    "register_protocol",
    "resolve",
]
