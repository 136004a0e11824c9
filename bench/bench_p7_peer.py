"""P7: xtuner against the tool a researcher would otherwise use, transformers' `Trainer.hyperparameter_search` with
the Ray backend (goal: xtuner's whole-process wall time <= 0.8x the peer's, with and without ASHA).

    .venv/bin/python bench/bench_p7_peer.py [--rounds 3] [--schedulers none asha] [--out bench/results/p7.json]

Both sides get the same work: the shipped `builtin:tiny-xlmr`, synth-xnli, the same rows (the first
`--max-train` English train rows, the first `--max-eval` rows of English dev and of each test language, as
`run_trial` selects them), full fine-tuning, a 4-point learning-rate grid, `--epochs` epochs with an English dev
evaluation after each, batch 32, max length 64, 1 CPU per trial, `--concurrency` trials at once, seed 1 on both
sides (transformers' `set_seed` before the model is built and the same data order seed), and optionally ASHA (grace
1 epoch, reduction factor 2).

- **xtuner**: the CLI, ``python -m xtuner sweep run spec.yaml`` with the equivalent spec (written to the run's temp
  folder), tracking to a fresh sqlite database (what a user gets by default). Its result: the best configuration
  on English dev and its test accuracy per language, from the sweep's state file.
- **peer** (`peer` below, run as ``bench_p7_peer.py --peer``): the straightforward user script. Tokenise with the
  model's tokenizer, ``Trainer(model_init=..., compute_metrics=accuracy)``, ``hyperparameter_search(
  backend="ray", hp_space=grid_search over learning_rate, compute_objective=eval_accuracy,
  max_concurrent_trials, resources_per_trial={"cpu": 1}[, scheduler=ASHAScheduler])``. The search returns the best
  learning rate only, so per-language results take what a user would add: train once more with that learning rate
  (best epoch on English dev, `load_best_model_at_end`) and ``trainer.evaluate`` each language's test set.

Each measurement is the whole process (Python start, imports, Ray start, search, per-language results, exit), in
a fresh temp folder, timed from outside; the memory is the peak sum of RSS over the process tree (Ray's processes
included), sampled every 0.5 s. Rounds interleave the sides (the order alternates per round); the result is the
ratio of the medians per scheduler. Accuracy is reported beside the time, per side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LRS = [1e-4, 3e-4, 1e-3, 3e-3]
TASK = "synth-xnli"


# ------------------------------------------------------------------------------------------------ the peer
def peer(args: argparse.Namespace) -> None:
    """What a transformers user writes: hyperparameter_search over the lr grid, then the per-language evaluation."""
    import dataclasses

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from xtuner.models import resolve_model
    from xtuner.tasks import get_task

    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    task = get_task(TASK)

    def rows(split: str, lang: str, n: int):
        ds = task.load(split, lang)
        ds = ds.select(range(min(n, len(ds))))
        return ds.map(lambda b: tokenizer(b["premise"], b["hypothesis"], truncation=True, max_length=args.max_len),
                      batched=True, remove_columns=["premise", "hypothesis"])  # fmt: skip

    train, dev = rows("train", "en", args.max_train), rows("validation", "en", args.max_eval)
    tests = {lang: rows("test", lang, args.max_eval) for lang in args.languages}

    def model_init(trial=None):
        return AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)

    def accuracy(p) -> dict[str, float]:
        return {"accuracy": 100.0 * float((p.predictions.argmax(-1) == p.label_ids).mean())}

    targs = TrainingArguments(
        output_dir=str(Path(args.workdir) / "out"), per_device_train_batch_size=32, per_device_eval_batch_size=64,
        num_train_epochs=args.epochs, eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch",
        seed=args.seed, report_to=[], disable_tqdm=True, use_cpu=True,
    )  # fmt: skip
    trainer = Trainer(model_init=model_init, args=targs, train_dataset=train, eval_dataset=dev,
                      processing_class=tokenizer, compute_metrics=accuracy)  # fmt: skip
    kwargs = {"max_concurrent_trials": args.concurrency, "resources_per_trial": {"cpu": 1},
              "storage_path": str(Path(args.workdir) / "ray_results")}  # fmt: skip
    if args.scheduler == "asha":
        kwargs["scheduler"] = ASHAScheduler(metric="objective", mode="max", grace_period=1, reduction_factor=2,
                                            max_t=int(args.epochs))  # fmt: skip
    best = trainer.hyperparameter_search(
        hp_space=lambda _: {"learning_rate": tune.grid_search(LRS)}, backend="ray", n_trials=1,
        direction="maximize", compute_objective=lambda m: m["eval_accuracy"], **kwargs,
    )  # fmt: skip
    lr = best.hyperparameters["learning_rate"]
    # per-language results: the search returns the best learning rate; train with it and evaluate every language
    final_args = dataclasses.replace(targs, learning_rate=lr, load_best_model_at_end=True,
                                     metric_for_best_model="accuracy")  # fmt: skip
    final = Trainer(model_init=model_init, args=final_args, train_dataset=train, eval_dataset=dev,
                    processing_class=tokenizer, compute_metrics=accuracy)  # fmt: skip
    final.train()
    dev_best = final.evaluate()["eval_accuracy"]
    test = {lang: final.evaluate(ds, metric_key_prefix="test")["test_accuracy"] for lang, ds in tests.items()}
    Path(args.peer_out).write_text(json.dumps({"best_lr": lr, "search_objective": best.objective,
                                               "dev_en": dev_best, "test": test}))  # fmt: skip


# ------------------------------------------------------------------------------------------------ xtuner side
def xtuner_spec(args: argparse.Namespace, scheduler: str) -> dict:
    sched = {"type": "asha", "grace_period": 1, "reduction_factor": 2} if scheduler == "asha" else {"type": "none"}
    return {"name": "p7", "model": args.model, "tasks": [TASK], "methods": {"finetune": {"lr": LRS}},
            "epochs": args.epochs, "seeds": [args.seed], "search": "grid", "scheduler": sched,
            "resources": {"cpu": 1, "gpu": 0}, "max_concurrent": args.concurrency,
            "trial": {"batch_size": 32, "eval_batch_size": 64, "max_seq_length": args.max_len,
                      "max_train_examples": args.max_train, "max_eval_examples": args.max_eval,
                      "languages": args.languages}}  # fmt: skip


def xtuner_result(results: Path) -> dict:
    state = json.loads((results / "p7" / "xtuner_sweep.json").read_text())
    done = [t for t in state["trials"].values() if t.get("state") == "done" and t.get("dev_curve")]
    best = max(done, key=lambda t: max(v for _, v in t["dev_curve"]))  # best config on English dev, as the report
    final = best.get("final") or {}
    return {"best_lr": best["params"]["lr"], "dev_en": final.get("dev/en/accuracy"),
            "test": {k.split("/")[1]: v for k, v in final.items() if k.startswith("test/") and k.endswith("/accuracy")
                     and k.split("/")[1] not in ("avg", "gap", "others")},
            "trials": {s: sum(t.get("state") == s for t in state["trials"].values()) for s in ("done", "pruned")}}  # fmt: skip


# ------------------------------------------------------------------------------------------------ measuring
def tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> tuple[float, float, int]:
    """(wall s, peak tree RSS MB, return code) of `cmd`, run in `cwd`."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.5)
    return time.perf_counter() - t0, peak / 2**20, proc.returncode


def run_side(side: str, args: argparse.Namespace, scheduler: str, keep: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"p7-{side}-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
        log = keep / f"{side}-{scheduler}-{time.strftime('%H%M%S')}.log"
        if side == "xtuner":
            import yaml

            (work / "spec.yaml").write_text(yaml.safe_dump(xtuner_spec(args, scheduler), sort_keys=False))
            cmd = [sys.executable, "-m", "xtuner", "sweep", "run", "spec.yaml", "--storage", str(work / "results"),
                   "--tracking-uri", f"sqlite:///{work}/mlflow.db", "--quiet"]  # fmt: skip
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--peer", "--workdir", str(work), "--peer-out",
                   str(work / "peer.json"), "--scheduler", scheduler, *_shared_argv(args)]  # fmt: skip
        load = os.getloadavg()[0]
        wall, peak_mb, rc = timed(cmd, work, env, log)
        row = {"side": side, "scheduler": scheduler, "wall_s": round(wall, 2), "peak_rss_mb": round(peak_mb),
               "rc": rc, "load_before": round(load, 2), "log": str(log)}  # fmt: skip
        if rc == 0:
            row.update(xtuner_result(work / "results") if side == "xtuner" else
                       json.loads((work / "peer.json").read_text()))  # fmt: skip
        return row


def _shared_argv(args: argparse.Namespace) -> list[str]:
    return ["--model", args.model, "--epochs", str(args.epochs), "--max-train", str(args.max_train), "--max-eval",
            str(args.max_eval), "--max-len", str(args.max_len), "--concurrency", str(args.concurrency), "--seed",
            str(args.seed), "--languages", *args.languages]  # fmt: skip


def summarise(rows: list[dict], schedulers: list[str]) -> dict:
    out = {}
    for sched in schedulers:
        walls = {s: [r["wall_s"] for r in rows if r["side"] == s and r["scheduler"] == sched and r["rc"] == 0]
                 for s in ("xtuner", "peer")}  # fmt: skip
        if not all(walls.values()):
            continue
        med = {s: statistics.median(v) for s, v in walls.items()}
        mem = {s: statistics.median([r["peak_rss_mb"] for r in rows if r["side"] == s and r["scheduler"] == sched
                                     and r["rc"] == 0]) for s in walls}  # fmt: skip
        out[sched] = {"median_wall_s": med, "ratio_xtuner_over_peer": round(med["xtuner"] / med["peer"], 3),
                      "median_peak_rss_mb": mem, "runs": {s: len(v) for s, v in walls.items()}}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--schedulers", nargs="+", default=["none", "asha"], choices=["none", "asha"])
    ap.add_argument("--model", default="builtin:tiny-xlmr")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--max-eval", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--languages", nargs="+", default=["en", "s2", "s4", "s6"])
    ap.add_argument("--out", help="write rows and summary as JSON here (rewritten after every run)")
    ap.add_argument("--logs", default=None, help="folder for the runs' output (default: a temp folder)")
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--peer-out", help=argparse.SUPPRESS)
    ap.add_argument("--scheduler", default="none", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        peer(args)
        return
    keep = Path(args.logs or tempfile.mkdtemp(prefix="p7-logs-"))
    keep.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for rnd in range(args.rounds):
        for sched in args.schedulers:
            order = ("xtuner", "peer") if rnd % 2 == 0 else ("peer", "xtuner")
            for side in order:
                row = run_side(side, args, sched, keep)
                row["round"] = rnd
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.out:
                    Path(args.out).write_text(json.dumps({"rows": rows, "summary": summarise(rows, args.schedulers)},
                                                         indent=1))  # fmt: skip
    summary = summarise(rows, args.schedulers)
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
