"""P4 benchmark: deep_prompt vs finetune train-step time and peak memory, same model and batch, CPU.

Run (prints a table and writes JSON):

    .venv/bin/python bench/bench_p4_methods.py                 # tiny + mid, 2 repeats
    .venv/bin/python bench/bench_p4_methods.py --configs mid --repeats 3 --steps 6 --out bench/p4.json

What is measured, per (config, method, repeat), each in a FRESH subprocess so no allocation of one method can hide
or inflate the other's:
- the model is built with ``xtuner.methods.build_model`` from a random-init XLM-R saved to a temp dir, an AdamW
  optimiser is created over the trainable parameters (as the HF Trainer would), and one fixed batch is made;
- every parameter is read once (so lazily mapped weights are resident before the window), then
  the kernel's peak-RSS mark is reset (``echo 5 > /proc/self/clear_refs``), then warm-up + timed train steps run
  (forward, backward, ``optimizer.step()``, ``zero_grad``); optimiser state is allocated inside the window;
- time: median wall time of the timed steps;
- memory: ``VmHWM`` (peak resident set) over the training window, reported two ways: the whole process (weights,
  runtime, activations, gradients, optimiser state) and the increase over the RSS just before training
  (activations + gradients + optimiser state: what training adds on top of holding the model).
Methods alternate within each repeat (finetune, deep_prompt, deep_prompt, finetune, ...) and ratios use the
medians over repeats, to damp the load of other processes on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    # the test suite's tiny model
    "tiny": dict(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    ),
    # a mid-size XLM-R-shaped model (xlm-roberta-large is 250k vocab, 1024 hidden, 24 layers)
    "mid": dict(
        vocab_size=30000, hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=2048
    ),
    # opt-in: the xlm-roberta-base shape (278M parameters, most of them in the 250k-row embedding)
    "base": dict(
        vocab_size=250002,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
    ),
}
METHODS = ("finetune", "deep_prompt")
DEFAULT_STEPS = {"tiny": 40, "mid": 5, "base": 3}  # timed steps per run unless --steps is given


def _status_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def worker(args: argparse.Namespace) -> None:
    import torch

    from xtuner.methods import build_model
    from xtuner.tasks.base import HeadType

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    settings = {"psl": args.psl} if args.method == "deep_prompt" else {}
    built = build_model(args.model, HeadType.SEQUENCE_CLASSIFICATION, 3, args.method, settings)
    model = built.model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    vocab = model.config.vocab_size
    input_ids = torch.randint(3, vocab, (args.batch, args.seq))
    attention_mask = torch.ones_like(input_ids)
    labels = torch.randint(0, 3, (args.batch,))

    with torch.no_grad():  # fault in every weight page (from_pretrained may map the file lazily)
        for param in model.parameters():
            param.sum()
    rss_before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark to the current RSS
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = _status_kb("VmHWM")
    result = {
        "method": args.method,
        "step_s": statistics.median(times),
        "peak_rss_mb": peak / 1024,
        "train_extra_mb": (peak - rss_before) / 1024,
        "trainable_params": built.trainable_params,
        "total_params": built.total_params,
    }
    print("RESULT " + json.dumps(result))


def run_worker(model_dir: str, method: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, __file__, "--worker", "--model", model_dir, "--method", method,
        "--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps),
        "--warmup", str(args.warmup), "--psl", str(args.psl), "--threads", str(args.threads),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"worker failed ({method}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def save_model(name: str, root: Path, seq: int) -> str:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(0)
    config = XLMRobertaConfig(max_position_embeddings=seq + 2 + 64, **CONFIGS[name])
    path = root / name
    XLMRobertaModel(config).save_pretrained(path)
    return str(path)


def bench_config(name: str, args: argparse.Namespace, root: Path) -> dict:
    model_dir = save_model(name, root, args.seq)
    args = argparse.Namespace(**{**vars(args), "steps": args.steps or DEFAULT_STEPS[name]})
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    for repeat in range(args.repeats):
        order = METHODS if repeat % 2 == 0 else METHODS[::-1]
        for method in order:
            runs[method].append(run_worker(model_dir, method, args))
            print(f"  {name} {method} repeat {repeat}: {runs[method][-1]}", flush=True)

    def med(method: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[method])

    summary = {"config": name, "model": CONFIGS[name], "batch": args.batch, "seq": args.seq, "psl": args.psl}
    summary.update(steps=args.steps, warmup=args.warmup, repeats=args.repeats, threads=args.threads)
    for method in METHODS:
        summary[method] = {k: med(method, k) for k in ("step_s", "peak_rss_mb", "train_extra_mb")}
        summary[method]["trainable_params"] = runs[method][0]["trainable_params"]
        summary[method]["total_params"] = runs[method][0]["total_params"]
    for key in ("step_s", "peak_rss_mb", "train_extra_mb"):
        summary[f"ratio_{key}"] = med("deep_prompt", key) / med("finetune", key)
    summary["runs"] = runs
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "mid"], choices=sorted(CONFIGS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--psl", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default: per config)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per worker (1: least noisy when shared)"
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            results.append(bench_config(name, args, Path(tmp)))
    print(f"\nP4 deep_prompt (psl {args.psl}) / finetune, batch {args.batch} x seq {args.seq}, CPU:")
    print(
        f"{'config':8} {'time':>8} {'peak RSS':>9} {'train extra':>12}   (goal: time <= 0.75, memory <= 0.60)"
    )
    for r in results:
        print(
            f"{r['config']:8} {r['ratio_step_s']:8.2f} {r['ratio_peak_rss_mb']:9.2f} {r['ratio_train_extra_mb']:12.2f}"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
