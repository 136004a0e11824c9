"""A finished trial's best weights, kept for the analyses (representations, retrieval) after the trial is gone.

A kept-weights folder (a local path or an ``s3://`` / ``gs://`` URI) holds:

- ``xtuner_weights.json``: what rebuilds the model: task, head, number of labels, method and its settings, model
  (a hub id, a path or ``builtin:...``), whether only the trainable tensors were saved, and the trial config;
- ``weights.safetensors``: only the trainable tensors when the method freezes the backbone (deep_prompt,
  soft_prompt: the prefix and the head, ``psl x layers x 2 x hidden`` floats: 3.1 MB for xlm-roberta-large at
  psl 16; lora: the adapters and the head), or the whole model for fine-tuning (2.2 GB for xlm-roberta-large in
  fp32), which is why fine-tuning keeps its weights only on request.

`keeps(policy, built)`: ``none`` keeps nothing, ``auto`` keeps the small ones (methods that train only part of the
model), ``all`` keeps every method's. Loading rebuilds the backbone from the model name and loads the tensors into
it (`load_kept`); the tokenizer comes from the model too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from xtuner.errors import XtunerError

META = "xtuner_weights.json"
WEIGHTS = "weights.safetensors"
FORMAT = 1
Policy = Literal["none", "auto", "all"]


def keeps(policy: str, built) -> bool:
    if policy == "all":
        return True
    return policy == "auto" and built.trainable_params < built.total_params


def _is_remote(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def save_kept(built, setup, location: str) -> int:
    """Write `built`'s current weights (the best, after training) and their recipe to `location`; returns bytes.
    The folder appears whole or not at all (written beside it, then renamed; uploaded last on object stores)."""
    from safetensors.torch import save_file, save_model

    cfg = setup.cfg
    trainable_only = built.trainable_params < built.total_params
    meta = {
        "format": FORMAT, "task": setup.task.name, "head": str(setup.task.head),
        "num_labels": max(len(setup.task.labels), 1), "method": cfg.method,
        "method_settings": setup.settings.model_dump(), "model": cfg.model,
        "trust_remote_code": cfg.trust_remote_code, "trainable_only": trainable_only,
        "trainable_params": built.trainable_params, "total_params": built.total_params,
        "config": cfg.model_dump(mode="json"),
    }  # fmt: skip
    if cfg.intermediate_variant != "none":  # the backbone is the stage-1 encoder (xtuner/intermediate), not `model`
        meta["backbone"] = setup.model_path
    with tempfile.TemporaryDirectory(prefix="xtuner-kept-") as tmp:
        staged = Path(tmp) / "kept"
        staged.mkdir()
        if trainable_only:
            save_file(built.trainable_state_dict(), str(staged / WEIGHTS))
        else:
            save_model(built.model, str(staged / WEIGHTS))  # handles tied tensors
        size = (staged / WEIGHTS).stat().st_size
        meta["bytes"] = size
        (staged / META).write_text(json.dumps(meta, indent=2))
        _publish(staged, location)
    return size


def _publish(staged: Path, location: str) -> None:
    if _is_remote(location):
        import pyarrow.fs as pafs

        fs, path = pafs.FileSystem.from_uri(location)
        fs.create_dir(path, recursive=True)
        pafs.copy_files(str(staged / WEIGHTS), f"{location.rstrip('/')}/{WEIGHTS}")
        pafs.copy_files(str(staged / META), f"{location.rstrip('/')}/{META}")  # last: marks the folder complete
        return
    target = Path(location.removeprefix("file://")).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    for f in staged.iterdir():
        shutil.copyfile(f, tmp / f.name)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp made it private; a kept folder is as readable as any other
    if target.exists():  # a retried trial writes its weights again
        shutil.rmtree(target)
    tmp.rename(target)


@dataclass
class Kept:
    """A model rebuilt from kept weights, ready for forward passes (eval mode)."""

    location: str
    meta: dict[str, Any]
    built: Any  # xtuner.methods.BuiltModel
    tokenizer: Any

    @property
    def method(self) -> str:
        return str(self.meta["method"])


def read_meta(location: str) -> dict[str, Any]:
    from xtuner.sweep.state import exists, join, read_text

    path = join(location, META)
    if not exists(path):
        raise XtunerError(f"{location} holds no kept weights (no {META}); a trial keeps them with keep_weights "
                          "(sweep spec key, or xtuner trial --keep-weights DIR)")  # fmt: skip
    try:
        meta = json.loads(read_text(path))
    except (OSError, ValueError) as e:
        raise XtunerError(f"{path}: unreadable kept-weights description ({e})") from None
    if meta.get("format") != FORMAT:
        raise XtunerError(f"{path}: kept-weights format {meta.get('format')!r}; this xtuner reads format {FORMAT}")
    return meta


def load_kept(location: str) -> Kept:
    """Rebuild the model of a kept-weights folder (local or object store) and load its tensors."""
    from safetensors.torch import load_file, load_model
    from transformers import AutoTokenizer

    from xtuner.methods import build_model
    from xtuner.models import resolve_model
    from xtuner.tasks import HeadType

    meta = read_meta(location)
    model_path = meta.get("backbone") or resolve_model(meta["model"])
    built = build_model(model_path, HeadType(meta["head"]), int(meta["num_labels"]), meta["method"],
                        meta["method_settings"], trust_remote_code=bool(meta.get("trust_remote_code")))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="xtuner-kept-") as tmp:
        local = _local_copy(location, Path(tmp))
        try:
            if meta["trainable_only"]:
                built.load_trainable_state_dict(load_file(str(local)))
            else:
                load_model(built.model, str(local), strict=True)
        except (OSError, RuntimeError, ValueError) as e:
            raise XtunerError(f"{location}: the kept weights do not fit the rebuilt {meta['method']!r} model of "
                              f"{meta['model']!r}: {e}") from None  # fmt: skip
    built.model.eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=bool(meta.get("trust_remote_code")))
    return Kept(location, meta, built, tokenizer)


def _local_copy(location: str, tmp: Path) -> Path:
    if not _is_remote(location):
        path = Path(location.removeprefix("file://")).expanduser() / WEIGHTS
        if not path.is_file():
            raise XtunerError(f"{location}: {WEIGHTS} is missing")
        return path
    import pyarrow.fs as pafs

    dest = tmp / WEIGHTS
    pafs.copy_files(f"{location.rstrip('/')}/{WEIGHTS}", str(dest))
    return dest
