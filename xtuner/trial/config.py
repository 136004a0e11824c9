"""The config of one trial and the reporter protocol of `run_trial`.

A trial config arrives as ONE FLAT DICT (that is what Ray Tune's search space produces and what MLflow logs as
params). `TrialConfig.from_flat` splits it: keys of `TrialConfig` are common settings; every other key is a
method setting and is validated by the method's own config model (which rejects settings that do not belong to
the method, e.g. `psl` for `finetune`).
"""

from __future__ import annotations

import functools
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xtuner.errors import XtunerError
from xtuner.intermediate.settings import IntermediateSettings, Variant


class TrialConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # finite numbers only

    task: str
    model: str = "builtin:tiny-xlmr"
    method: str = "finetune"
    method_settings: dict[str, Any] = Field(default_factory=dict)  # validated by the method's config model
    lr: float = Field(gt=0)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    epochs: float = Field(3, gt=0)
    max_seq_length: int = Field(128, ge=16)
    doc_stride: int | None = Field(
        None, ge=8
    )  # QA window overlap in tokens; None = min(128, max_seq_length // 3)
    seed: int = 1
    eval_interval: int | None = Field(None, ge=1)  # optimizer steps between en-dev evals; None = every epoch
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    warmup_steps: int = Field(0, ge=0)  # linear warm-up over this many optimizer steps (exclusive with warmup_ratio)
    weight_decay: float = Field(0.0, ge=0)
    grad_accum_steps: int = Field(1, ge=1)  # optimizer step every N batches: N x batch_size examples per update
    lr_schedule: Literal["linear", "constant", "exponential"] = "linear"  # exponential: lr x lr_gamma per epoch
    lr_gamma: float = Field(0.95, gt=0, le=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto = bf16 on a GPU that supports it, else fp32
    # GPU efficiency (xtuner/trial/efficiency.py): auto = fused AdamW on CUDA; length-grouped batches and
    # torch.compile are off (a different example order; compile time), and so are loader workers (they shift the
    # dropout RNG stream)
    optimizer: Literal["auto", "adamw_torch", "adamw_torch_fused"] = "auto"
    group_by_length: bool = False
    torch_compile: bool = False
    dataloader_workers: int = Field(0, ge=0)
    pin_memory: bool = True
    # the model that is tested: best en-dev main metric, lowest en-dev loss, or the last one trained
    selection: Literal["metric", "loss", "last"] = "metric"
    save_strategy: Literal["eval", "best"] = "eval"  # checkpoint at every en-dev evaluation, or only at a new best
    dev_split: str = "validation"  # the English dev set that selection reads (a task may offer more, e.g. xnli)
    protocol: str | None = None  # a preset (xtuner.protocols) that fills every setting this config leaves unset
    protocol_version: int | None = None  # written by the resolution; set it to pin a version
    protocol_overrides: list[str] | None = None  # written by the resolution: preset settings this config changed
    languages: list[str] | None = None  # zero-shot test languages; None = all of the task's languages
    # what the zero-shot evaluation reads: "test" (the task's test sets), or "validation" (the dev sets, for data
    # without test labels; metrics keep the names test/<lang>/..., and the English number is then the selection
    # set itself, an optimistic one)
    eval_split: Literal["test", "validation"] = "test"
    data_dir: str | None = None
    # a split's own source, overriding data_dir for that split: "hub", a folder (layout detected), or
    # "xtreme:<folder>", "local:<folder>", "release:<folder>" (docs/data.md)
    train_data: str | None = None
    validation_data: str | None = None
    test_data: str | None = None
    cache_dir: str | None = (
        None  # tokenisation cache; default ~/.cache/xtuner/tokenized (XTUNER_CACHE overrides)
    )
    output_dir: str | None = None  # checkpoints; default a temp dir removed at the end
    max_train_examples: int | None = Field(None, ge=1)  # for smoke tests and benchmarks
    max_eval_examples: int | None = Field(None, ge=1)
    trust_remote_code: bool = False
    n_best: int = Field(20, ge=1)  # QA decoding
    max_answer_length: int = Field(30, ge=1)  # QA decoding, in tokens
    # the best weights, kept after the trial (xtuner/trial/weights.py): a folder or s3:// / gs:// URI, and which
    # methods keep them there ("auto": those that train only part of the model; "all": fine-tuning too)
    weights_dir: str | None = None
    keep_weights: Literal["none", "auto", "all"] = "all"
    # per-example test predictions, one parquet per language (xtuner/trial/predictions.py), for the paired
    # bootstrap of `xtuner report`; predictions_dir is set by the sweep (<storage>/<name>/predictions/<trial>/)
    predictions: bool = True
    predictions_dir: str | None = None
    # > 0: the representation analysis on this many parallel train rows at the end (sentence-pair tasks only),
    # logged as analysis/representations/<lang>/<metric>
    representation_rows: int = Field(0, ge=0)
    # an intermediate stage before training (xtuner/intermediate): its variant (none | en | multi, a sweep axis),
    # its settings, and the folder or s3:// / gs:// URI where stage-1 results are shared (default: the cache)
    intermediate_variant: Variant = "none"
    intermediate: IntermediateSettings | None = None
    intermediate_dir: str | None = None

    @field_validator("train_data", "validation_data", "test_data")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is not None:
            from xtuner.tasks.base import parse_split_source

            try:
                parse_split_source(v)
            except XtunerError as e:
                raise ValueError(str(e)) from None
        return v

    def split_sources(self) -> dict[str, str]:
        """The per-split sources that are set, as `LoadContext.splits`."""
        pairs = (("train", self.train_data), ("validation", self.validation_data), ("test", self.test_data))
        return {split: value for split, value in pairs if value}
    @model_validator(mode="after")
    def _consistent(self) -> TrialConfig:
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("set warmup_ratio or warmup_steps, not both")
        if self.intermediate_variant != "none" and self.intermediate is None:
            raise ValueError(f"intermediate_variant {self.intermediate_variant!r} needs the intermediate settings")
        if self.save_strategy == "best" and self.selection == "last":
            raise ValueError("save_strategy 'best' keeps only the best checkpoint: it needs selection 'metric' or 'loss'")
        return self

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> TrialConfig:
        """Split a flat config (after filling in its protocol, if it names one) into common and method settings."""
        from xtuner.protocols import resolve

        flat = resolve(flat)
        common = {k: v for k, v in flat.items() if k in cls.model_fields and k != "method_settings"}
        extra = {k: v for k, v in flat.items() if k not in cls.model_fields}
        extra.update(flat.get("method_settings") or {})
        try:
            return cls(**common, method_settings=extra)
        except ValidationError as e:
            raise XtunerError(f"invalid trial config: {_pretty(e)}") from None


def _pretty(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


class Reporter(Protocol):
    """How `run_trial` talks to its caller (Ray Tune, the CLI, a test). No Ray import here."""

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None = None) -> None:
        """Called after each en-dev evaluation (metrics like ``dev/en/accuracy``, ``epoch``, ``step``)
        with a directory holding a resumable checkpoint, and once at the end with the final flat metrics."""

    def resume_from(self) -> str | None:
        """A checkpoint directory to resume from (after a failure or a sweep restore), or None."""


@functools.cache
def closed_vocabulary() -> dict[str, frozenset[str]]:
    """Trial settings whose value is one of a closed list the spec validates (`TrialConfig`'s Literal fields, e.g.
    eval_split, lr_schedule, selection)."""
    from typing import get_args, get_origin

    out = {}
    for name, field in TrialConfig.model_fields.items():
        if get_origin(field.annotation) is Literal:
            out[name] = frozenset(map(str, get_args(field.annotation)))
    return out


def unmaskable_settings(params: dict[str, Any]) -> dict[str, Any]:
    """The settings of a flat trial config that cannot hold a secret and are stored as they are, never through the
    substring masking of registered secrets (which would turn ``eval_split: test`` into ``***`` when a password is
    "test"): numbers, and values from a closed list (`closed_vocabulary`), under keys that do not name a secret."""
    from xtuner.cluster.redact import is_secret_key

    vocab = closed_vocabulary()
    return {k: v for k, v in params.items() if not is_secret_key(k) and (
        (isinstance(v, int | float) and not isinstance(v, bool)) or str(v) in vocab.get(k, ()))}  # fmt: skip
