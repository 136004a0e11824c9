"""The sweep spec: a YAML file read with ``yaml.safe_load`` and validated by pydantic, ``extra="forbid"`` everywhere.

This module checks the *shape* of the spec (types, ranges, unknown keys) and turns every pydantic error into ONE
`XtunerError` that names the field path, its line in the YAML file, and for an unknown key the valid keys with a
did-you-mean hint. The *meaning* (task, method and language names, method settings per grid point, search and
scheduler conflicts) is checked by `xtuner.sweep.space.build_plan`, also before Ray starts.

`--set a.b.c=value` overrides are applied to the parsed YAML before validation (dotted paths, values parsed as
YAML scalars by `xtuner.cli.common.parse_set`).

Bounds on the input itself (`load_yaml`): the file must be UTF-8 text of at most `MAX_YAML_BYTES`; anchors and aliases
may not expand it past `MAX_YAML_NODES` values (a 645-byte "billion laughs" spec would otherwise exhaust memory), nor
refer to themselves. Every number is finite (``.inf``/``.nan`` are refused), and the sweep name is at most
`MAX_NAME_LENGTH` characters (it names a folder and MLflow runs).
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from xtuner.errors import XtunerError
from xtuner.intermediate.settings import IntermediateSettings, Variant

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_NAME_LENGTH = 100
MAX_YAML_BYTES = 1_000_000
MAX_YAML_NODES = 50_000  # values after expanding aliases; a large spec has a few hundred


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SchedulerSpec(_Strict):
    type: Literal["asha", "none"] = "none"
    grace_period: float = Field(1, gt=0, description="epochs a trial runs before ASHA may stop it")
    reduction_factor: float = Field(2, gt=1, description="ASHA keeps the top 1/reduction_factor at each rung")
    brackets: int = Field(1, ge=1)


class ResourcesSpec(_Strict):
    cpu: float = Field(1, gt=0)
    gpu: float = Field(0, ge=0)

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError(
                "a trial can take a fraction of ONE GPU (0 < gpu < 1) or whole GPUs, not " + str(v)
            )
        return v


class ResourcePlan(ResourcesSpec):
    methods: dict[str, ResourcesSpec] = Field(default_factory=dict, description="per-method overrides")


class TrackingSpec(_Strict):
    uri: str = "sqlite:///mlflow.db"
    experiment: str | None = None  # default: xtuner-<sweep name>
    enabled: bool = True


class CheckpointSpec(_Strict):
    enabled: bool = True
    num_to_keep: int = Field(1, ge=1)
    keep_finished: bool = False  # keep the checkpoints of finished trials (they are only needed to resume)


class IntermediateSpec(IntermediateSettings):
    """``tasks.<task>.intermediate``: the stage-1 settings, and the variants searched like any other setting."""

    variant: list[Variant] = Field(description="none | en | multi, or a list of them (a sweep axis)")

    @field_validator("variant", mode="before")
    @classmethod
    def _listed(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("variant")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("a non-empty list of distinct variants (none, en, multi)")
        return v

    def settings(self) -> IntermediateSettings:
        return IntermediateSettings.model_validate(self.model_dump(exclude={"variant"}))


class TaskOverride(_Strict):
    trial: dict[str, Any] = Field(default_factory=dict)
    methods: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    intermediate: IntermediateSpec | None = None  # an intermediate stage before this task (xtuner/intermediate)


class SweepSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH)
    description: str = ""
    model: str | None = None
    models: list[str] | None = Field(None, min_length=1)
    tasks: dict[str, TaskOverride] = Field(min_length=1)
    methods: dict[str, dict[str, Any] | None] = Field(min_length=1)
    epochs: float | None = Field(None, gt=0)
    seeds: list[int] = Field(default_factory=lambda: [1], min_length=1)
    search: Literal["grid", "random", "optuna"] = "grid"
    num_samples: int = Field(1, ge=1)
    search_seed: int = 0
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    resources: ResourcePlan = Field(default_factory=ResourcePlan)
    max_concurrent: int | None = Field(None, ge=1)
    max_failures: int = Field(0, ge=0)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    storage: str = "./xtuner_results"
    data_dir: str | None = None
    eval_split: Literal["test", "validation"] | None = None  # None = trial: block, else "test"
    trial: dict[str, Any] = Field(default_factory=dict)
    checkpoints: CheckpointSpec = Field(default_factory=CheckpointSpec)
    # each finished trial's tested weights in <storage>/<name>/weights/<trial>/ (xtuner analyze reads them):
    # auto = the methods that train part of the model (prompts, LoRA: small), all = fine-tuning too, none
    keep_weights: Literal["none", "auto", "all"] = "auto"
    # > 0: the representation analysis at the end of every trial of a sentence-pair task, on this many parallel
    # train rows (the reference used 2000); metrics analysis/representations/<lang>/<metric> on the trial's run
    representations: int = Field(0, ge=0)
    # a finished, fully tracked sweep logs `xtuner report`'s plots, HTML and tables under report/ of its parent
    # run (about 10-30 s on CPU); false skips it (`xtuner report NAME` still makes it later)
    report: bool = True
    _where: str = PrivateAttr("sweep spec")  # file name for messages
    _text: str | None = PrivateAttr(None)  # YAML text, for line numbers in messages
    _overrides: tuple[str, ...] = PrivateAttr(())  # the --set keys (dotted): errors there name them, not a line

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        tasks = data.get("tasks")
        if isinstance(tasks, list):  # a plain list of task names: no overrides
            if not all(isinstance(t, str) for t in tasks):
                raise ValueError("tasks: a list of task names, or a mapping task -> {trial, methods}")
            if len(set(tasks)) != len(tasks):
                raise ValueError("tasks: a task is listed twice")
            data["tasks"] = {t: {} for t in tasks}
        elif isinstance(tasks, dict):
            data["tasks"] = {k: ({} if v is None else v) for k, v in tasks.items()}
        return data

    @model_validator(mode="after")
    def _one_model_key(self) -> SweepSpec:
        if (self.model is None) == (self.models is None):
            raise ValueError("give exactly one of model: NAME or models: [NAME, ...]")
        if self.models is not None and len(set(self.models)) != len(self.models):
            raise ValueError("models: a model is listed twice")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: a seed is listed twice")
        return self

    @property
    def model_names(self) -> list[str]:
        return list(self.models) if self.models is not None else [str(self.model)]

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or f"xtuner-{self.name}"

    def error(self, loc: list[str], message: str) -> XtunerError:
        """An XtunerError for the field at `loc`: `file: line N: a.b.c: message`, or `--set a.b=...: message` when
        a --set override gave that value."""
        given = set_override(self._overrides, loc)
        if given:
            return XtunerError(f"{blame_set(given, loc)}{message}")
        line = yaml_line(self._text, loc) if self._text else None
        return XtunerError(
            f"{self._where}: {'line ' + str(line) + ': ' if line else ''}{'.'.join(loc)}: {message}"
        )


def set_override(overrides: tuple[str, ...] | list[str], loc: list[str]) -> str | None:
    """The override KEY (dotted) that gave the value at `loc`, a value inside it, or the mapping that holds it."""
    for dotted in overrides:
        parts = dotted.split(".")
        if [str(p) for p in loc[: len(parts)]] == parts or parts[: len(loc)] == [str(p) for p in loc]:
            return dotted
    return None


def blame_set(dotted: str, loc: list[str]) -> str:
    """``--set a.b: `` (plus the field's path when the problem is at another level than the key given)."""
    path = ".".join(str(p) for p in loc)
    return f"--set {dotted}: " + ("" if path == dotted else f"{path or '(top level)'}: ")


# ------------------------------------------------------------------------------------------------ loading
def load_spec(
    source: str | Path | dict,
    overrides: dict[str, Any] | None = None,
    *,
    tracking_uri: str | None = None,
    storage: str | None = None,
) -> SweepSpec:
    """Read and validate a spec (a YAML path or an already-parsed dict); raise one XtunerError naming the field."""
    text, where = None, "sweep spec"
    if isinstance(source, dict):
        raw: Any = source
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise XtunerError(f"sweep spec {str(source)!r} not found")
        where = str(source)
        text = read_text_file(path, where)
        raw = load_yaml(text, where)
    if not isinstance(raw, dict):
        raise XtunerError(f"{where}: expected a mapping of sweep settings at the top level")
    raw = _apply_overrides(raw, overrides or {})
    if tracking_uri:
        raw = _apply_overrides(raw, {"tracking.uri": tracking_uri})
    if storage:
        raw = _apply_overrides(raw, {"storage": storage})
    from xtuner.cluster.redact import register_secrets_in

    register_secrets_in(raw)  # passwords in its URIs are masked in everything printed or written from now on
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        keys = list(overrides or {})
        blamed = all(set_override(keys, [str(p) for p in err["loc"]]) for err in e.errors())
        message = format_validation_error(e, text, overrides=keys)
        raise XtunerError(message if blamed else f"{where}: {message}") from None
    spec._where, spec._text, spec._overrides = where, text, tuple(overrides or {})
    return spec


def read_text_file(path: Path, where: str, max_bytes: int = MAX_YAML_BYTES) -> str:
    """The UTF-8 text of `path` (a byte-order mark is allowed); XtunerError naming the file otherwise."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise XtunerError(f"{where}: {size:,} bytes; a spec is at most {max_bytes:,} bytes")
        data = path.read_bytes()
    except OSError as e:
        raise XtunerError(f"{where}: cannot read it ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise XtunerError(f"{where}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                          "save it as UTF-8") from None  # fmt: skip


def load_yaml(text: str, where: str, max_nodes: int = MAX_YAML_NODES) -> Any:
    """`yaml.safe_load` with bounds: one document, at most `max_nodes` values once aliases are expanded, no alias
    that contains itself. Raises one XtunerError naming `where`."""
    if len(text) > MAX_YAML_BYTES:
        raise XtunerError(f"{where}: {len(text):,} characters; a spec is at most {MAX_YAML_BYTES:,}")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {}, set(), max_nodes)
        if size > max_nodes:
            raise XtunerError(f"{where}: the YAML expands to more than {max_nodes:,} values through its aliases "
                              "(*name); write the repeated parts out or use fewer aliases")  # fmt: skip
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise XtunerError(f"{where}: not valid YAML: {e}") from None
    except RecursionError:
        raise XtunerError(f"{where}: the YAML is nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int], limit: int) -> int:
    """Values under `node` with every alias expanded (memoised per node, so aliases cost nothing here)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise XtunerError("the YAML has an alias inside its own anchor (a recursive structure)")
    open_.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, sizes, open_, limit)
        if total > limit:
            break
    open_.discard(key)
    sizes[key] = total
    return total


def _apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    import copy

    out = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if isinstance(nxt, list) and part == "tasks":  # tasks given as a list: turn into a mapping
                nxt = node[part] = {t: {} for t in nxt}
            if not isinstance(nxt, dict):
                raise XtunerError(f"--set {dotted}: {'.'.join(parts[: i + 1])} is not a mapping")
            node = nxt
        node[parts[-1]] = value
    return out


def format_validation_error(e: ValidationError, text: str | None = None, model: type = SweepSpec,
                            overrides: list[str] | None = None) -> str:  # fmt: skip
    parts = []
    for err in e.errors():
        loc = [str(p) for p in err["loc"]]
        path = ".".join(loc) or "(top level)"
        given = set_override(overrides or [], loc)
        line = yaml_line(text, loc) if text and not given else None
        at = blame_set(given, loc) if given else (f"line {line}: " if line else "") + f"{path}: "
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(model, loc[:-1])
            hint = close_match(loc[-1], valid)
            msg = f"unknown key {loc[-1]!r}" + (f" (did you mean {hint!r}?)" if hint else "")
            msg += f"; valid keys here: {', '.join(valid)}" if valid else ""
            parts.append(f"{at}{msg}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{at}{msg}")
    return "; ".join(parts)


def close_match(name: str, valid: list[str]) -> str | None:
    """A key that starts with or contains `name` (e.g. grace -> grace_period), else difflib's closest."""
    for cond in (lambda v: v.startswith(name), lambda v: name in v):
        found = [v for v in valid if cond(v)]
        if len(found) == 1:
            return found[0]
    hint = difflib.get_close_matches(name, valid, n=1)
    return hint[0] if hint else None


def _valid_keys(model: type, loc: list[str]) -> list[str]:
    """Field names of the pydantic model found at `loc` (walking nested models and dict[str, Model] values)."""
    cls: Any = model
    i = 0
    while i < len(loc):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or loc[i] not in cls.model_fields:
            return []
        ann = _unwrap(cls.model_fields[loc[i]].annotation)
        if typing.get_origin(ann) is dict:
            ann = _unwrap(typing.get_args(ann)[1])
            i += 1  # the dict key
        cls = ann
        i += 1
    return sorted(cls.model_fields) if isinstance(cls, type) and issubclass(cls, BaseModel) else []


def _unwrap(ann: Any) -> Any:
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        return args[0] if len(args) == 1 else ann
    return ann


def yaml_line(text: str, loc: list[str]) -> int | None:
    """1-based line of the key at `loc` in the YAML `text` (the deepest part found)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if str(k.value) == part), None)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line
