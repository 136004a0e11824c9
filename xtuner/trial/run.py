"""`run_trial(config, reporter)`: the ONE train-eval function every trial of every sweep runs. No Ray here.

Reads top-down:
1. `setup`: validate the flat config, resolve task, model and method settings (all errors before training).
   With an ``intermediate_variant`` other than none, stage 1 (`xtuner.intermediate.stage1`) runs or is reused
   first, and its encoder is the backbone from then on; its metrics (``stage1/...``) join the final ones.
2. `prepare_data`: English train + dev and every target language's test split, tokenised through the on-disk
   cache (keyed by tokenizer, task, language, split, max length), so later trials skip tokenisation.
3. `build_model`: the method wraps the backbone (xtuner.methods).
4. `train`: transformers' Trainer (AdamW, the `lr_schedule`, optional warmup and gradient accumulation, bf16 on a
   capable GPU). After each epoch or `eval_interval` steps it scores English dev (the `dev_split`, e.g. MNLI
   matched for XNLI) and saves a checkpoint (every time, or only at a new best); the reporter receives the dev
   metrics and the checkpoint. The `selection` rule picks the model that is tested: the best checkpoint by en-dev
   main metric or lowest en-dev loss, reloaded at the end, or the last one. A NaN/inf loss raises
   NonFiniteLossError at once.
5. `evaluate`: zero-shot on the test split of every language (length-bucketed, inference mode), or on the
   validation split with `eval_split: validation` (metric names stay `test/<lang>/...`). The per-example
   predictions go to `predictions_dir` (`xtuner/trial/predictions.py`: one parquet per language).
6. Optionally (`xtuner/trial/after.py`): keep the best weights (`weights_dir`) and measure the representation
   alignment of the trained model (`representation_rows`, ``analysis/representations/...`` metrics).
7. Return per-language metrics, their mean, the transfer gap (en minus mean of the others), parameter counts,
   train/eval seconds and the training-loss log; the same numbers flat (`test/<lang>/<m>`, `test/avg/<m>`,
   `test/others/<m>`, `test/gap/<m>`, and all of them again under the name `main` for the task's main metric, so
   one key sorts every task: `test/<lang>/main`, `test/avg/main`, `test/others/main`, `test/gap/main`,
   `dev/en/main`) go to the reporter's final report, with ``predictions_dir`` when predictions were written and
   ``train/losses`` not yet reported.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xtuner.errors import XtunerError
from xtuner.progress import Progress, progress_of, step_callback
from xtuner.trial.after import keep_weights, representation_metrics
from xtuner.trial.config import Reporter, TrialConfig


class NonFiniteLossError(XtunerError):
    """The training loss became NaN or infinite; the trial stops with this message."""


class NullReporter:
    def report(self, metrics: dict[str, float], checkpoint_dir: str | None = None) -> None:
        pass

    def resume_from(self) -> str | None:
        return None


@dataclass
class Setup:
    cfg: TrialConfig
    task: Any
    model_path: str
    settings: Any
    tokenizer: Any
    languages: list[str]
    cache_dir: Path
    doc_stride: int
    bf16: bool  # decided once, in setup (a bf16 request without a capable GPU fails before any work)


def quiet_libraries() -> None:
    """Keep transformers/datasets to warnings that matter: no weight-loading reports or shard progress bars."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def run_trial(config: dict[str, Any] | TrialConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    reporter = reporter or NullReporter()
    progress = progress_of(reporter)  # what the trial is doing, for a person watching (`xtuner trial`)
    progress.stage("checking the task, model and method settings")
    quiet_libraries()
    if os.environ.get("XTUNER_NUM_THREADS"):  # e.g. 1 on a busy laptop; Ray sets OMP_NUM_THREADS per trial
        import torch

        torch.set_num_threads(int(os.environ["XTUNER_NUM_THREADS"]))
    setup = setup_trial(config)
    stage1 = None
    if setup.cfg.intermediate_variant != "none":  # stage 1 (xtuner/intermediate): the backbone is its encoder
        from xtuner.intermediate.stage1 import run_stage1

        progress.stage(f"stage 1: {setup.cfg.intermediate.task} ({setup.cfg.intermediate_variant}), trained or reused")
        stage1 = run_stage1(setup)
        setup.model_path = stage1.encoder
    if setup.task.head == "retrieval":  # no training: the encoder is evaluated (xtuner/trial/retrieval.py)
        from xtuner.trial.retrieval import run_retrieval_trial

        return run_retrieval_trial(setup, reporter)
    data = prepare_data(setup, progress)
    progress.stage(f"building the {setup.cfg.method} model from {setup.cfg.model}")
    built = build(setup)
    out_dir, own_dir = _output_dir(setup.cfg)
    try:
        t0 = time.time()
        history, losses = train(setup, data, built, reporter, out_dir)
        kept = keep_weights(setup, built)  # the model the trial tests (the best, or the last with selection last)
        t1 = time.time()
        test, predictions = evaluate(setup, data, built.model, progress)
        written = _save_predictions(setup, predictions)
        analysis = representation_metrics(setup, built)
        t2 = time.time()
    finally:
        if own_dir:
            shutil.rmtree(out_dir, ignore_errors=True)
    result = summarize(setup, test, built, history, train_seconds=t1 - t0, eval_seconds=t2 - t1)
    result["metrics"].update(analysis)
    result["weights"], result["predictions"] = kept, written
    result["train_loss"] = losses.points
    extra = {"weights_dir": kept} if kept else {}
    extra.update({"predictions_dir": written} if written else {})
    rest = losses.take()
    extra.update({"train/losses": rest} if rest else {})
    if stage1 is not None:
        result["metrics"].update(stage1.metrics)
        result["intermediate_key"] = extra["intermediate_key"] = stage1.key
    reporter.report({**result["metrics"], **extra, "done": 1.0}, None)
    return result


# ------------------------------------------------------------------------------------------------ 1. setup
def setup_trial(config: dict[str, Any] | TrialConfig) -> Setup:
    from xtuner.methods import validate_settings
    from xtuner.models import resolve_model
    from xtuner.models.checks import check_max_seq_length, load_tokenizer, model_config
    from xtuner.tasks import get_task

    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_flat(config)
    task = get_task(cfg.task)
    settings = validate_settings(cfg.method, cfg.method_settings)
    task.check_dev_split(cfg.dev_split)
    languages = sorted(cfg.languages) if cfg.languages else list(task.languages)
    task.check_eval_split(cfg.eval_split, languages)  # before any model or data is loaded
    for lang in languages:
        task.check_language(lang)
    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path, cfg.model, trust_remote_code=cfg.trust_remote_code)  # vocab fits
    config = model_config(model_path)
    if config is not None:
        check_max_seq_length(cfg.max_seq_length, config, cfg.model, psl=settings.position_offset(),
                             label=f"task {cfg.task}, method {cfg.method}")  # fmt: skip
    from xtuner.data.cache import default_cache_dir
    from xtuner.paths import folder_problem

    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    problem = folder_problem(cache_dir)
    if problem:
        raise XtunerError(f"cache_dir {str(cache_dir)!r} {problem}")
    doc_stride = cfg.doc_stride if cfg.doc_stride is not None else min(128, cfg.max_seq_length // 3)
    return Setup(cfg, task, model_path, settings, tokenizer, languages, cache_dir, doc_stride, use_bf16(cfg))


# ------------------------------------------------------------------------------------------------ 2. data
@dataclass
class TrialData:
    train: Any  # model columns only
    dev: Any  # EvalSplit (en validation)
    dev_model: Any  # dev features restricted to model columns (for the dev loss)
    test: dict[str, Any]  # lang -> EvalSplit
    cache_hits: int
    cache_misses: int
    prep_seconds: float


def prepare_data(setup: Setup, progress: Progress | None = None, with_train: bool = True) -> TrialData:
    from xtuner.data.cache import cached_prepare, cached_tokenize
    from xtuner.data.preprocess import select_model_columns
    from xtuner.tasks import LoadContext
    from xtuner.trial.evaluate import EvalSplit

    cfg, task = setup.cfg, setup.task
    ctx = LoadContext(data_dir=Path(cfg.data_dir).expanduser() if cfg.data_dir else None,
                      splits=cfg.split_sources())  # fmt: skip
    hits = misses = 0
    started = time.time()

    def load(split: str, lang: str, train: bool, limit: int | None):
        """(raw, features) of one split; with a data key, a cache hit skips loading the raw data entirely."""
        nonlocal hits, misses

        def raw_loader():
            raw = task.load(split, lang, ctx)
            return raw.select(range(limit)) if limit is not None and len(raw) > limit else raw

        key = task.raw_data_key(split, lang, ctx)
        key = None if key is None else f"{key}:limit={limit}"
        kwargs = dict(max_length=cfg.max_seq_length, doc_stride=setup.doc_stride, train=train,
                      cache_dir=setup.cache_dir, data_key=key)  # fmt: skip
        if train:  # training needs only the features
            raw, (feats, hit) = (
                None,
                cached_tokenize(task, split, lang, raw_loader, setup.tokenizer, **kwargs),
            )
        else:  # evaluation needs the raw split too (references, QA contexts)
            raw, feats, hit = cached_prepare(task, split, lang, raw_loader, setup.tokenizer, **kwargs)
        hits, misses = hits + hit, misses + (not hit)
        return raw, feats

    src = task.source_lang
    progress = progress or progress_of(None)
    progress.start("data", 2 + len(setup.languages), "loading + tokenising splits (cached)")
    train_feats = load("train", src, True, cfg.max_train_examples)[1] if with_train else None
    progress.advance("data", 1, f"train/{src}")
    dev_raw, dev_feats = load(cfg.dev_split, src, False, cfg.max_eval_examples)
    progress.advance("data", 2, f"{cfg.dev_split}/{src}")
    test = {}
    for i, lang in enumerate(setup.languages, 3):  # eval_split "validation": the dev sets; English is the selection set
        if cfg.eval_split == "validation" and lang == src and cfg.dev_split == "validation":
            raw, feats = dev_raw, dev_feats
        else:
            raw, feats = load(cfg.eval_split, lang, False, cfg.max_eval_examples)
        test[lang] = EvalSplit(lang, raw, feats)
        progress.advance("data", i, f"{cfg.eval_split}/{lang}")
    progress.finish("data")
    return TrialData(
        train=select_model_columns(task, train_feats, True) if with_train else None,
        dev=EvalSplit(src, dev_raw, dev_feats),
        dev_model=select_model_columns(task, dev_feats, False),
        test=test,
        cache_hits=hits,
        cache_misses=misses,
        prep_seconds=time.time() - started,
    )


# ------------------------------------------------------------------------------------------------ 3. model
def build(setup: Setup):
    from transformers import set_seed

    from xtuner.methods import build_model
    from xtuner.models.checks import check_weights, model_config

    set_seed(setup.cfg.seed)
    check_weights(setup.model_path, model_config(setup.model_path))  # truncated, garbage or foreign weights
    try:
        return build_model(
            setup.model_path, setup.task.head, max(len(setup.task.labels), 1), setup.cfg.method,
            setup.settings.model_dump(), trust_remote_code=setup.cfg.trust_remote_code,
        )  # fmt: skip
    except (OSError, RuntimeError, ValueError) as e:
        if "ignore_mismatched_sizes" in str(e) or "size mismatch" in str(e):
            raise XtunerError(f"model {setup.cfg.model!r} ({setup.model_path}): its weights do not match its "
                              "config.json (tensor shapes differ)") from None  # fmt: skip
        if isinstance(e, OSError) or type(e).__name__ == "SafetensorError":
            raise XtunerError(f"cannot load model {setup.cfg.model!r} ({setup.model_path}): {e}") from None
        raise


# ------------------------------------------------------------------------------------------------ 4. train
def use_bf16(cfg: TrialConfig) -> bool:
    import torch

    cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if cfg.precision == "bf16" and not cuda_bf16:
        raise XtunerError("precision 'bf16' needs a CUDA GPU with bf16 support; use 'auto' or 'fp32'")
    return cfg.precision == "bf16" or (cfg.precision == "auto" and cuda_bf16)


def train(setup: Setup, data: TrialData, built, reporter: Reporter, out_dir: Path):
    """Train; returns (the en-dev history, the `LossLog` of training losses)."""
    from xtuner.trial.trainer import make_trainer, restore_checkpoint

    trainer, history = make_trainer(setup, data, built, reporter, out_dir)
    trainer.add_callback(step_callback(progress_of(reporter)))  # steps and ETA for `xtuner trial`
    resume = reporter.resume_from()
    if resume:  # continue where the checkpoint left off, with its dev history and its best model
        try:
            resume, earlier = restore_checkpoint(resume, out_dir, setup.task.source_lang, setup.task.main_metric)
        except (OSError, ValueError, KeyError) as e:
            raise XtunerError(f"cannot resume the trial from checkpoint {resume}: {e}") from None
        history[:0] = earlier
    trainer.train(resume_from_checkpoint=resume)
    return history, trainer.losses


# ------------------------------------------------------------------------------------------------ 5. evaluate
def evaluate(
    setup: Setup, data: TrialData, model, progress: Progress | None = None
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Per language: the metrics, and the `Predictions` they were computed from."""
    from xtuner.trial.evaluate import metrics_of

    progress = progress or progress_of(None)
    progress.start("test", len(data.test), f"zero-shot {setup.cfg.eval_split}, per language")
    test, predictions = {}, {}
    for i, (lang, split) in enumerate(sorted(data.test.items()), 1):
        predictions[lang] = predict(setup, model, split)
        test[lang] = metrics_of(setup.task, predictions[lang], lang)
        main = test[lang].get(setup.task.main_metric, 0)
        progress.advance("test", i, f"{lang} {setup.task.main_metric} {main:.1f}")
    progress.finish("test")
    return test, predictions


def score(setup: Setup, model, split) -> dict[str, float]:
    """One split's metrics; English dev during training and every test split at the end go through here."""
    from xtuner.trial.evaluate import metrics_of

    return metrics_of(setup.task, predict(setup, model, split), split.lang)


def predict(setup: Setup, model, split):
    from xtuner.trial.evaluate import predict_split

    cfg = setup.cfg
    return predict_split(
        setup.task, model, split, setup.tokenizer, batch_size=cfg.eval_batch_size, n_best=cfg.n_best,
        max_answer_length=cfg.max_answer_length, use_bf16=setup.bf16,
    )  # fmt: skip


def _save_predictions(setup: Setup, predictions: dict[str, Any]) -> str | None:
    from xtuner.trial.predictions import predictions_location, save_predictions

    location = predictions_location(setup.cfg)
    return save_predictions(setup.task, predictions, location) if location else None


# ------------------------------------------------------------------------------------------------ 6. summary
def summarize(
    setup: Setup, test, built, history, *, train_seconds: float, eval_seconds: float
) -> dict[str, Any]:
    task = setup.task
    metric_names = sorted({k for m in test.values() for k in m})
    avg = {m: sum(test[lang][m] for lang in test) / len(test) for m in metric_names}
    src = task.source_lang
    others = [lang for lang in test if lang != src]
    gap = {}
    if src in test and others:
        gap = {m: test[src][m] - sum(test[lang][m] for lang in others) / len(others) for m in metric_names}
    flat: dict[str, float] = {}
    for lang, scores in test.items():
        flat.update({f"test/{lang}/{m}": v for m, v in scores.items()})
    flat.update({f"test/avg/{m}": v for m, v in avg.items()})
    if others:
        flat.update({f"test/others/{m}": sum(test[lang][m] for lang in others) / len(others) for m in metric_names})
    flat.update({f"test/gap/{m}": v for m, v in gap.items()})
    main = task.main_metric
    for key in [k for k in flat if k.startswith("test/") and k.endswith("/" + main)]:
        flat[key.removesuffix(main) + "main"] = flat[key]  # one name for every task's main metric
    best = _best(history, task.main_metric, setup.cfg.selection)
    if best:
        flat.update({k: v for k, v in best.items() if k.startswith("dev/")})
    flat.update(
        trainable_params=float(built.trainable_params), total_params=float(built.total_params),
        train_seconds=train_seconds, eval_seconds=eval_seconds,
    )  # fmt: skip
    return {
        "task": task.name,
        "method": setup.cfg.method,
        "eval_split": setup.cfg.eval_split,
        "main_metric": task.main_metric,
        "test": test,
        "avg": avg,
        "gap": gap,
        "dev": best,
        "history": history,
        "trainable_params": built.trainable_params,
        "total_params": built.total_params,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "metrics": flat,
    }


def _best(history: list[dict[str, float]], main: str, selection: str) -> dict[str, float]:
    """The dev row of the model that is tested: the best by main metric, the lowest loss, or the last evaluated
    (ties: the earliest, as Trainer keeps the first checkpoint that reached the best value)."""
    if selection == "last":
        return history[-1] if history else {}
    key = f"dev/en/{main}" if selection == "metric" else "dev/en/loss"
    rows = [h for h in history if key in h and not math.isnan(h[key])]
    if not rows:
        return {}
    return (max if selection == "metric" else min)(rows, key=lambda h: h[key])


def _output_dir(cfg: TrialConfig) -> tuple[Path, bool]:
    if cfg.output_dir:
        path = Path(cfg.output_dir).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    from xtuner.trial import scratch

    scratch.remove_stale()  # folders of killed trials on this node
    return scratch.make_dir(), True
