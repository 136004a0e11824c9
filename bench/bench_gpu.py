"""GPU check: environment, training/eval throughput of the paper's model shapes per method, and end-to-end trials.

Run on a GPU machine through ``bench/gpu_check.sh`` (installs the wheels of ``.whl/`` first), or directly:

    PYTHONPATH=. python3 bench/bench_gpu.py --out gpu.json            # full check (CUDA; ~2-4 min on an H100)
    PYTHONPATH=. .venv/bin/python bench/bench_gpu.py --smoke --out /tmp/gpu-smoke.json   # tiny shapes, CPU

Design:
- one JSON file (``--out``), rewritten after every measurement, so a run cut short still leaves what it measured;
- every (shape, method) and every end-to-end trial is wrapped: an exception is recorded as text and the run goes on;
- a time budget (``--budget-s``) skips what is left once it is spent, so the script always finishes and writes;
- throughput models are XLM-R shapes built from configs (no hub): a random-init ``XLMRobertaModel`` is saved once
  per shape (fp32 safetensors, initialised on the GPU for speed) and every method builds from it through
  xtuner's own entry point ``xtuner.methods.build_model`` (it loads with ``from_pretrained``, which needs weights);
- training: AdamW over the trainable parameters, bf16 autocast on CUDA (fp32 weights, as the HF Trainer's
  ``bf16=True``), fp32 on CPU (``--precision bf16`` autocasts there too); random token ids, all-ones mask, labels in 0..2; warm-up steps, then timed steps
  between ``torch.cuda.synchronize()`` calls; eval is forward-only under ``torch.no_grad``;
- memory: ``torch.cuda.max_memory_allocated`` over the training window and over the eval window (each reset
  before), both including the resident weights; the model is freed (del, gc, empty_cache) between configs;
- end-to-end: ``xtuner.trial.run_trial`` on the shipped ``builtin:tiny-xlmr`` and ``synth-xnli``, precision "auto"
  (bf16 is used when ``xtuner.trial.run.use_bf16`` says so: a CUDA GPU with bf16 support).
Never imports ray, mlflow or optuna.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

XLMR = dict(vocab_size=250002, max_position_embeddings=514, type_vocab_size=1)
SHAPES = {
    "xlm-roberta-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, **XLMR),
    "xlm-roberta-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, **XLMR),
}  # fmt: skip
SMOKE_SHAPES = {
    "tiny-a": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                   vocab_size=1000, max_position_embeddings=514, type_vocab_size=1),
    "tiny-b": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                   vocab_size=1000, max_position_embeddings=514, type_vocab_size=1),
}  # fmt: skip
METHODS = ("finetune", "deep_prompt", "soft_prompt", "lora")
THROUGHPUT_SETTINGS = {"finetune": {}, "deep_prompt": {"psl": 16}, "soft_prompt": {"psl": 16}, "lora": {}}
E2E_SETTINGS = {"finetune": {}, "deep_prompt": {"psl": 8}, "soft_prompt": {"psl": 8}, "lora": {}}
E2E_LR = {"finetune": 1e-4, "deep_prompt": 1e-3, "soft_prompt": 1e-3, "lora": 1e-3}
E2E_LANGS = ["en", "s1", "s3", "s5"]


class Run:
    """The JSON document being built, rewritten to `out` after every change; plus the time budget."""

    def __init__(self, out: Path, budget_s: float) -> None:
        self.out = out
        self.start = time.time()
        self.budget_s = budget_s
        self.doc: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "complete": False}

    def left(self) -> float:
        return self.budget_s - (time.time() - self.start)

    def save(self) -> None:
        self.doc["elapsed_s"] = round(time.time() - self.start, 2)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(self.out.suffix + ".tmp")
        tmp.write_text(json.dumps(self.doc, indent=2, default=str))
        tmp.replace(self.out)


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}\n{''.join(traceback.format_exception(e)[-6:])}"


# ------------------------------------------------------------------------------------------------ a. environment
def environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            device=torch.cuda.get_device_name(0),
            device_count=torch.cuda.device_count(),
            capability=".".join(map(str, torch.cuda.get_device_capability(0))),
            total_memory_gb=round(props.total_memory / 2**30, 2),
            bf16_supported=torch.cuda.is_bf16_supported(),
            cudnn=torch.backends.cudnn.version(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        )
    else:
        env.update(device="cpu", bf16_supported=False, cpu_threads=torch.get_num_threads())
    for name in ("transformers", "peft", "datasets", "pydantic", "pydantic_core", "huggingface_hub",
                 "tokenizers", "accelerate", "safetensors", "seqeval", "numpy", "pyarrow", "pandas"):  # fmt: skip
        try:
            mod = importlib.import_module(name)
            try:
                env[f"{name}_version"] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                env[f"{name}_version"] = getattr(mod, "__version__", "?")
            env[f"{name}_from"] = str(Path(mod.__file__).parent.parent) if mod.__file__ else "?"
        except Exception as e:  # noqa: BLE001 - recorded, the check goes on
            env[f"{name}_version"] = f"IMPORT FAILED: {type(e).__name__}: {e}"
    env["forbidden_imported"] = sorted(m for m in ("ray", "mlflow", "optuna") if m in sys.modules)
    return env


# ------------------------------------------------------------------------------------------------ b. throughput
def save_backbone(shape: dict[str, Any], path: Path, device: str) -> float:
    """A random-init XLMRobertaModel of `shape`, saved (config + fp32 safetensors) to `path`; returns seconds."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    t0 = time.time()
    torch.manual_seed(0)
    config = XLMRobertaConfig(**shape)
    with torch.device(device):  # init on the GPU: seconds instead of a minute for the large shape on CPU
        model = XLMRobertaModel(config)
    model.to("cpu").save_pretrained(path)
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return time.time() - t0


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def autocast(device: str, bf16: bool):
    import torch

    if bf16:
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def throughput_one(path: Path, method: str, vocab: int, device: str, p: argparse.Namespace) -> dict[str, Any]:
    import torch

    from xtuner.methods import build_model
    from xtuner.tasks.base import HeadType

    settings = THROUGHPUT_SETTINGS.get(method, {})
    row: dict[str, Any] = {"settings": settings}
    t0 = time.time()
    torch.manual_seed(0)
    built = build_model(str(path), HeadType.SEQUENCE_CLASSIFICATION, 3, method, settings)
    model = built.model.to(device)
    sync(device)
    row.update(build_s=round(time.time() - t0, 2), trainable_params=built.trainable_params,
               total_params=built.total_params,
               param_dtype=str(next(model.parameters()).dtype),
               attn_implementation=getattr(getattr(model, "config", None), "_attn_implementation", None))  # fmt: skip
    if device == "cuda":
        row["weights_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)
    optimizer = loss = None
    try:
        optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5)
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(5, vocab, (p.batch, p.seq), generator=gen).to(device)
        mask = torch.ones_like(ids)
        labels = torch.randint(0, 3, (p.batch,), generator=gen).to(device)

        # training
        model.train()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        loss = None
        for step in range(p.warmup + p.steps):
            if step == p.warmup:
                sync(device)
                start = time.perf_counter()
            with autocast(device, p.bf16):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        sync(device)
        elapsed = time.perf_counter() - start
        row.update(train_steps=p.steps, train_s=round(elapsed, 4),
                   train_steps_per_s=round(p.steps / elapsed, 3),
                   train_examples_per_s=round(p.steps * p.batch / elapsed, 1),
                   last_loss=float(loss.detach().float()))  # fmt: skip
        if device == "cuda":
            row["train_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        optimizer = loss = None
        gc.collect()

        # eval: forward only
        model.eval()
        eval_ids = torch.randint(5, vocab, (p.eval_batch, p.seq), generator=gen).to(device)
        eval_mask = torch.ones_like(eval_ids)
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            for step in range(p.eval_warmup + p.eval_steps):
                if step == p.eval_warmup:
                    sync(device)
                    start = time.perf_counter()
                with autocast(device, p.bf16):
                    logits = model(input_ids=eval_ids, attention_mask=eval_mask).logits
        sync(device)
        elapsed = time.perf_counter() - start
        row.update(eval_steps=p.eval_steps, eval_s=round(elapsed, 4),
                   eval_examples_per_s=round(p.eval_steps * p.eval_batch / elapsed, 1),
                   eval_logits_finite=bool(torch.isfinite(logits.float()).all()))  # fmt: skip
        if device == "cuda":
            row["eval_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    finally:
        del model, built, optimizer, loss
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    return row


def throughput(run: Run, shapes: dict[str, dict], device: str, p: argparse.Namespace) -> None:
    results: dict[str, Any] = {}
    run.doc["throughput"] = {
        "device": device,
        "precision": "bf16 autocast" if p.bf16 else "fp32",
        "batch": p.batch, "seq": p.seq, "eval_batch": p.eval_batch,
        "warmup": p.warmup, "steps": p.steps, "eval_warmup": p.eval_warmup, "eval_steps": p.eval_steps,
        "optimizer": "torch.optim.AdamW (defaults, lr 1e-5)",
        "results": results,
    }  # fmt: skip
    for name, shape in shapes.items():
        results[name] = {"shape": shape}
        if run.left() < p.min_left_s:
            results[name]["skipped"] = f"time budget: {run.left():.0f}s left"
            run.save()
            continue
        with tempfile.TemporaryDirectory(
            prefix=f"bench-gpu-{name}-", dir=os.environ.get("XTUNER_TMP")
        ) as tmp:
            path = Path(tmp) / name
            try:
                results[name]["save_s"] = round(save_backbone(shape, path, device), 2)
            except Exception as e:  # noqa: BLE001 - recorded, the check goes on
                results[name]["error"] = error_text(e)
                print(f"[throughput] {name}: saving the model FAILED: {type(e).__name__}: {e}", flush=True)
                run.save()
                continue
            for method in p.methods:
                if run.left() < p.min_left_s:
                    results[name][method] = {"skipped": f"time budget: {run.left():.0f}s left"}
                    run.save()
                    continue
                try:
                    row = throughput_one(path, method, shape["vocab_size"], device, p)
                    print(f"[throughput] {name:18} {method:12} train {row['train_examples_per_s']:9.1f} ex/s "
                          f"({row['train_steps_per_s']:.2f} steps/s)  eval {row['eval_examples_per_s']:9.1f} ex/s  "
                          f"peak {row.get('train_peak_mb', float('nan')):8.0f} MB  "
                          f"trainable {row['trainable_params']:,}", flush=True)  # fmt: skip
                except Exception as e:  # noqa: BLE001 - recorded, the check goes on
                    row = {"error": error_text(e)}
                    print(f"[throughput] {name} {method}: FAILED: {type(e).__name__}: {e}", flush=True)
                    gc.collect()
                    with contextlib.suppress(Exception):
                        import torch

                        if device == "cuda":
                            torch.cuda.empty_cache()
                results[name][method] = row
                run.save()


# ------------------------------------------------------------------------------------------------ c. end to end
def end_to_end(run: Run, p: argparse.Namespace) -> None:
    from xtuner.trial.config import TrialConfig
    from xtuner.trial.run import run_trial, use_bf16

    results: dict[str, Any] = {}
    common = dict(task="synth-xnli", model="builtin:tiny-xlmr", precision="auto", epochs=p.e2e_epochs,
                  max_train_examples=p.e2e_train, max_eval_examples=p.e2e_eval, languages=E2E_LANGS)  # fmt: skip
    run.doc["end_to_end"] = {"common": common, "lr": E2E_LR, "results": results}
    for method in p.methods:
        if run.left() < p.min_left_s:
            results[method] = {"skipped": f"time budget: {run.left():.0f}s left"}
            run.save()
            continue
        config = {**common, "method": method, "lr": E2E_LR.get(method, 1e-3), **E2E_SETTINGS.get(method, {})}
        row: dict[str, Any] = {"config": config}
        t0 = time.time()
        try:
            row["bf16"] = use_bf16(TrialConfig.from_flat(config))
            out = run_trial(config)
            main = out["main_metric"]
            row.update(
                main_metric=main,
                dev=out["dev"],
                dev_en_best=out["dev"].get(f"dev/en/{main}"),
                test={lang: scores.get(main) for lang, scores in out["test"].items()},
                test_avg=out["avg"].get(main),
                gap=out["gap"].get(main),
                train_seconds=round(out["train_seconds"], 2),
                eval_seconds=round(out["eval_seconds"], 2),
                trainable_params=out["trainable_params"],
                total_params=out["total_params"],
                history=out["history"],
            )
            test = " ".join(f"{lang} {v:.3f}" for lang, v in row["test"].items())
            print(f"[e2e] {method:12} bf16={row['bf16']} dev-en best {row['dev_en_best']:.3f}  test {test}  "
                  f"train {row['train_seconds']:.1f}s", flush=True)  # fmt: skip
        except Exception as e:  # noqa: BLE001 - recorded, the check goes on
            row["error"] = error_text(e)
            print(f"[e2e] {method}: FAILED: {type(e).__name__}: {e}", flush=True)
        row["wall_s"] = round(time.time() - t0, 2)
        results[method] = row
        run.save()


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes and few steps (CPU check)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument(
        "--precision", choices=["auto", "bf16", "fp32"], default="auto",
        help="throughput autocast: auto = bf16 on CUDA, fp32 on CPU; bf16 on CPU checks the dtype paths",
    )  # fmt: skip
    parser.add_argument(
        "--budget-s", type=float, default=330.0, help="skip what is left after this many seconds"
    )
    parser.add_argument(
        "--min-left-s", type=float, default=20.0, help="start nothing new with less time left"
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="comma list of methods to run")
    parser.add_argument("--parts", default="env,throughput,e2e", help="comma list of env, throughput, e2e")
    p = parser.parse_args()
    if p.smoke:
        p.batch, p.seq, p.eval_batch, p.warmup, p.steps, p.eval_warmup, p.eval_steps = 8, 64, 16, 2, 2, 1, 2
        p.e2e_train, p.e2e_eval, p.e2e_epochs = 64, 32, 1
    else:
        p.batch, p.seq, p.eval_batch, p.warmup, p.steps, p.eval_warmup, p.eval_steps = (
            32,
            128,
            64,
            5,
            20,
            2,
            10,
        )
        p.e2e_train, p.e2e_eval, p.e2e_epochs = 2000, 500, 2
    parts = set(p.parts.split(","))
    p.methods = [m for m in p.methods.split(",") if m]

    run = Run(p.out, p.budget_s)
    run.doc.update(smoke=p.smoke, argv=sys.argv[1:], pythonpath=os.environ.get("PYTHONPATH", ""))
    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # no weight-loading reports (run_trial does the same)
    transformers.utils.logging.disable_progress_bar()
    if os.environ.get("XTUNER_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["XTUNER_NUM_THREADS"]))
    device = ("cuda" if torch.cuda.is_available() else "cpu") if p.device == "auto" else p.device
    p.bf16 = p.precision == "bf16" or (p.precision == "auto" and device == "cuda")
    try:
        run.doc["environment"] = environment()
    except Exception as e:  # noqa: BLE001
        run.doc["environment"] = {"error": error_text(e)}
    env = run.doc["environment"]
    print("[env] " + ", ".join(f"{k}={env.get(k)}" for k in (
        "python", "torch", "torch_cuda", "device", "bf16_supported", "total_memory_gb", "transformers_version",
        "peft_version", "datasets_version", "pydantic_version", "huggingface_hub_version", "tokenizers_version",
        "transformers_from")), flush=True)  # fmt: skip
    run.save()

    if "throughput" in parts:
        try:
            throughput(run, SMOKE_SHAPES if p.smoke else SHAPES, device, p)
        except Exception as e:  # noqa: BLE001
            run.doc.setdefault("throughput", {})["error"] = error_text(e)
            print(f"[throughput] FAILED: {e}", flush=True)
    if "e2e" in parts:
        try:
            end_to_end(run, p)
        except Exception as e:  # noqa: BLE001
            run.doc.setdefault("end_to_end", {})["error"] = error_text(e)
            print(f"[e2e] FAILED: {e}", flush=True)
    run.doc["forbidden_imported_at_end"] = sorted(m for m in ("ray", "mlflow", "optuna") if m in sys.modules)
    run.doc["complete"] = True
    run.save()
    summary(run.doc)


def summary(doc: dict[str, Any]) -> None:
    env = doc.get("environment", {})
    print("\n=== GPU check summary ===")
    print(f"device {env.get('device')} | torch {env.get('torch')} (cuda {env.get('torch_cuda')}) | bf16 "
          f"{env.get('bf16_supported')} | transformers {env.get('transformers_version')} | peft "
          f"{env.get('peft_version')} | elapsed {doc.get('elapsed_s')}s")  # fmt: skip
    tp = doc.get("throughput", {})
    if tp.get("results"):
        print(f"\nthroughput ({tp.get('precision')}, train batch {tp.get('batch')} x seq {tp.get('seq')}, "
              f"eval batch {tp.get('eval_batch')}):")  # fmt: skip
        print(f"{'shape':18} {'method':12} {'train ex/s':>11} {'eval ex/s':>10} {'train peak MB':>14} "
              f"{'trainable':>12}")  # fmt: skip
        for name, res in tp["results"].items():
            if "skipped" in res or "error" in res:
                why = res.get("skipped") or res["error"].splitlines()[0]
                print(f"{name:18} {'(all)':12} {why}")
            for method in (k for k, v in res.items() if k != "shape" and isinstance(v, dict)):
                row = res[method]
                if "train_examples_per_s" in row:
                    print(f"{name:18} {method:12} {row['train_examples_per_s']:11.1f} "
                          f"{row.get('eval_examples_per_s', float('nan')):10.1f} "
                          f"{row.get('train_peak_mb', float('nan')):14.0f} {row['trainable_params']:12,}")  # fmt: skip
                else:
                    why = row.get("skipped") or (row.get("error") or "").splitlines()[0]
                    print(f"{name:18} {method:12} {why}")
    e2e = doc.get("end_to_end", {})
    if e2e.get("results"):
        print("\nend to end (builtin:tiny-xlmr, synth-xnli, accuracy):")
        for method, row in e2e["results"].items():
            if "test" in row:
                test = " ".join(f"{lang}={v:.3f}" for lang, v in row["test"].items())
                print(f"{method:12} bf16={row['bf16']!s:5} dev-en={row['dev_en_best']:.3f} {test} "
                      f"train {row['train_seconds']:.1f}s")  # fmt: skip
            else:
                why = row.get("skipped") or (row.get("error") or "").splitlines()[0]
                print(f"{method:12} {why}")


if __name__ == "__main__":
    main()
