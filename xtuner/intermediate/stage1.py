"""Stage 1 of a two-stage trial: fine-tune the backbone on the intermediate task, keep only the encoder.

`run_stage1(setup)` is what `run_trial` calls before its own training when ``intermediate_variant`` is not
``none``. It finds the stage-1 result of the trial's key in the store (`xtuner.intermediate.store`), waits while
another trial trains it, or trains it itself, and returns the local folder of the encoder (the trial's backbone
from then on) and the stage-1 metrics for the trial's run.

Training reuses run_trial's own pieces: `setup_trial` for the intermediate task (its tokenizer, model checks and
settings), `prepare_data` for its English dev set, `build` (the ``finetune`` method: the stock transformers head)
and `train` (transformers' Trainer, en-dev selection of the best checkpoint). Only the training set is its own
(`xtuner.intermediate.data.stage1_rows`, tokenised through the same on-disk cache). The kept encoder is the
backbone's own architecture (``AutoModel``: embeddings, layers and the *pretrained* pooler, which the prompt
methods' classification heads use frozen), with the tuned embeddings and layers; the task head is dropped.

The key (`stage1_key`) is a digest of everything that determines the result: the model (name, and the content of a
local folder), the intermediate task, the variant, its languages, budget, noise and training settings (only those
that matter: ``en`` ignores the languages, budget and noise, so every multilingual configuration shares one English
stage 1), the seed, the precision, the dev-set cap, and the identity of the data (each split's data key: real paths
and contents of files, the generator version of synthetic data; the online hub by its repo and config).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xtuner.errors import XtunerError
from xtuner.intermediate.store import DONE, ENCODER, Stage1Store
from xtuner.tasks.base import LoadContext

FORMAT = 1


@dataclass
class Stage1:
    key: str
    encoder: str  # local folder: the encoder and its tokenizer (a from_pretrained path)
    metrics: dict[str, float]  # stage1/... for the trial's run
    languages: list[str]


def _model_identity(model: str, model_path: str) -> str:
    from xtuner.data.identity import path_fingerprint

    folder = Path(model_path).expanduser()
    return f"{model}|dir={path_fingerprint(folder)}" if folder.is_dir() else f"{model}|hub"


def stage1_settings(variant: str, inter: Any) -> dict[str, Any]:
    """The stage-1 settings that determine its result for `variant` (``en`` ignores budget and noise)."""
    settings = inter.model_dump(exclude={"languages", "task"})
    if variant == "en":
        for k in ("budget", "noise"):
            settings.pop(k)
    return settings


def stage1_key(
    cfg: Any, task: Any, languages: list[str], ctx: LoadContext, model_path: str
) -> tuple[str, dict]:
    """(key, the parts it digests); see the module doc."""
    variant = cfg.intermediate_variant
    data = {f"{split}/{lang}": task.raw_data_key(split, lang, ctx) or f"hub:{task.name}:{split}:{lang}"
            for split, lang in [("train", lang) for lang in languages] + [("validation", task.source_lang)]}  # fmt: skip
    parts = {
        "format": FORMAT, "model": _model_identity(cfg.model, model_path), "task": task.name, "variant": variant,
        "languages": languages, "settings": stage1_settings(variant, cfg.intermediate), "seed": cfg.seed,
        "precision": cfg.precision, "max_eval_examples": cfg.max_eval_examples,
        "trust_remote_code": cfg.trust_remote_code, "data": data,
    }  # fmt: skip
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
    return f"{task.name}-{variant}-{digest}", parts


def default_root() -> str:
    from xtuner.paths import cache_root

    return str(cache_root() / "intermediate-results")


def run_stage1(setup: Any) -> Stage1:
    """The trial's stage 1: reused, waited for, or trained here (module doc)."""
    from xtuner.paths import cache_root
    from xtuner.tasks import get_task

    cfg = setup.cfg
    inter = cfg.intermediate
    task = get_task(inter.task)
    langs = inter.stage1_languages(cfg.intermediate_variant, task.source_lang, list(task.train_languages))
    ctx = LoadContext(data_dir=Path(cfg.data_dir).expanduser() if cfg.data_dir else None)
    key, parts = stage1_key(cfg, task, langs, ctx, setup.model_path)
    store = Stage1Store(cfg.intermediate_dir or default_root(), key)
    started = time.time()
    trained = False
    if not store.done():
        with store.lock():  # another trial training this key holds it: wait here
            if not store.done():
                store.discard_partial()
                staged = store.staging_dir()
                try:
                    meta = train_stage1(setup, task, langs, ctx, key, staged / ENCODER)
                    meta.update(format=FORMAT, key=key, parts=parts)
                    (staged / DONE).write_text(json.dumps(meta, indent=2))
                    store.publish(staged)
                finally:
                    shutil.rmtree(staged, ignore_errors=True)
                trained = True
    meta = store.meta()
    metrics = {
        "stage1/reused": 0.0 if trained else 1.0,
        "stage1/wait_seconds": 0.0 if trained else time.time() - started,
        "stage1/seconds": float(meta["seconds"]),
        "stage1/examples": float(sum(meta["examples"].values())),
        **{f"stage1/examples/{lang}": float(n) for lang, n in meta["examples"].items()},
        **{f"stage1/{k}": float(v) for k, v in meta["dev"].items()},
    }
    return Stage1(key, store.local_encoder(cache_root()), metrics, langs)


def train_stage1(setup: Any, task: Any, langs: list[str], ctx: LoadContext, key: str, dest: Path) -> dict:
    """Fine-tune on the stage-1 rows with run_trial's pieces; save the encoder to `dest`; return the record."""
    from xtuner.data.cache import cached_tokenize
    from xtuner.data.preprocess import select_model_columns
    from xtuner.intermediate.data import stage1_rows
    from xtuner.trial.config import TrialConfig
    from xtuner.trial.run import NullReporter, _best, _output_dir, build, prepare_data, setup_trial, train

    cfg, inter = setup.cfg, setup.cfg.intermediate
    s1 = setup_trial(TrialConfig(
        task=task.name, model=cfg.model, method=inter.method, lr=inter.lr, epochs=inter.epochs,
        batch_size=inter.batch_size, max_seq_length=inter.max_seq_length, warmup_ratio=inter.warmup_ratio,
        seed=cfg.seed, precision=cfg.precision, eval_batch_size=cfg.eval_batch_size,
        max_eval_examples=cfg.max_eval_examples, data_dir=cfg.data_dir, cache_dir=cfg.cache_dir,
        trust_remote_code=cfg.trust_remote_code, languages=[task.source_lang], eval_split="validation",
        keep_weights="none",
    ))  # fmt: skip
    s1.model_path = setup.model_path
    data = prepare_data(s1, with_train=False)  # the English dev set only
    rows, counts = stage1_rows(task, langs, budget=inter.budget, max_en=inter.max_train_examples,
                               noise=inter.noise, seed=cfg.seed, ctx=ctx)  # fmt: skip
    feats, _ = cached_tokenize(task, "train", "stage1", lambda: rows, s1.tokenizer, max_length=inter.max_seq_length,
                               doc_stride=s1.doc_stride, train=True, cache_dir=s1.cache_dir,
                               data_key=f"stage1:{key}")  # fmt: skip
    data.train = select_model_columns(task, feats, True)
    built = build(s1)
    out_dir, own = _output_dir(s1.cfg)
    t0 = time.time()
    try:
        history, _ = train(s1, data, built, NullReporter(), out_dir)
    finally:
        if own:
            shutil.rmtree(out_dir, ignore_errors=True)
    seconds = time.time() - t0
    save_encoder(built.model, s1.model_path, s1.tokenizer, dest, trust_remote_code=cfg.trust_remote_code)
    best = _best(history, task.main_metric, "metric")
    dev = {k: v for k, v in best.items() if k.startswith("dev/")}
    if f"dev/{task.source_lang}/{task.main_metric}" in dev:
        dev[f"dev/{task.source_lang}/main"] = dev[f"dev/{task.source_lang}/{task.main_metric}"]
    return {"seconds": seconds, "examples": counts, "dev": dev, "history": history, "task": task.name,
            "languages": langs, "model": cfg.model}  # fmt: skip


def save_encoder(model: Any, model_path: str, tokenizer: Any, dest: Path, *, trust_remote_code: bool) -> None:
    """The backbone (``AutoModel`` of `model_path`, pooler included) with `model`'s tuned encoder weights, and the
    tokenizer, as a ``from_pretrained`` folder. Every backbone tensor but the pooler must come from `model`."""
    from transformers import AutoModel

    backbone = AutoModel.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    tuned = model.base_model.state_dict()
    result = backbone.load_state_dict(tuned, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("pooler.")]
    if missing or result.unexpected_keys:
        raise XtunerError(f"stage 1: the tuned encoder does not fit {model_path}: missing {missing[:5]}, "
                          f"unexpected {list(result.unexpected_keys)[:5]}")  # fmt: skip
    dest.mkdir(parents=True, exist_ok=True)
    backbone.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
