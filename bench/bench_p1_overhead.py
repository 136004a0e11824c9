"""P1: sweep orchestration overhead (goal <= 1.10).

    python bench/bench_p1_overhead.py [--trials 6] [--concurrency 1 2] [--max-train 600]

overhead = sweep wall time / (sum of the same trials' standalone run_trial times / concurrency).

The trials are identical synth-udpos fine-tuning runs of about 10 s (differing only in the seed). Standalone, at
the same concurrency as the sweep: `concurrency` processes side by side, each with `torch.set_num_threads(1)` (a
Ray trial with 1 CPU gets one thread), each running one untimed warm-up trial (imports, caches) and then its share
of the trials, each timed; so the ideal includes the same CPU contention as the sweep. Sweep: `run_sweep` with `max_concurrent` =
concurrency, 1 CPU per trial, no scheduler, tracking to a fresh sqlite database; its wall time counts everything
from the call to the end (actor start-up and imports in the workers, MLflow writes, summary); Ray's own start-up
(`ray.init`, once per sweep process) is timed separately and reported both added and not.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def trial_config(args: argparse.Namespace, seed: int) -> dict:
    return {"task": "synth-udpos", "model": "builtin:tiny-xlmr", "method": "finetune", "lr": 1e-3, "seed": seed,
            "epochs": args.epochs, "max_train_examples": args.max_train, "max_eval_examples": 64, "max_seq_length": 64,
            "batch_size": 32, "languages": ["en", "s2", "s4"]}  # fmt: skip


def _standalone_worker(args: argparse.Namespace, seeds: list[int], barrier) -> list[float]:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # as Ray sets them for 1 CPU
        os.environ[var] = "1"
    import torch

    from xtuner.trial import run_trial

    torch.set_num_threads(1)
    run_trial(trial_config(args, 0))  # warm-up: caches, imports
    barrier.wait()  # start the timed trials together, as the sweep's workers run side by side
    times = []
    for seed in seeds:
        t0 = time.perf_counter()
        run_trial(trial_config(args, seed))
        times.append(time.perf_counter() - t0)
    return times


def standalone(args: argparse.Namespace, concurrency: int) -> list[float]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    seeds = list(range(1, args.trials + 1))
    with ctx.Manager() as manager:
        barrier = manager.Barrier(concurrency)
        with ctx.Pool(concurrency) as pool:
            parts = pool.starmap(
                _standalone_worker, [(args, seeds[i::concurrency], barrier) for i in range(concurrency)]
            )
    times = [t for part in parts for t in part]
    print(f"standalone c={concurrency}: trials {', '.join(f'{t:.1f}' for t in times)} s", flush=True)
    return times


def sweep(args: argparse.Namespace, concurrency: int, tmp: Path) -> dict:
    from xtuner.sweep.runner import load_plan, run_sweep

    cfg = trial_config(args, 1)
    trial = {k: v for k, v in cfg.items() if k not in ("task", "model", "method", "lr", "seed")}
    spec = {"name": f"p1-c{concurrency}", "model": cfg["model"], "tasks": [cfg["task"]],
            "methods": {"finetune": {"lr": cfg["lr"]}}, "seeds": list(range(1, args.trials + 1)),
            "max_concurrent": concurrency, "trial": trial, "storage": str(tmp / "results"),
            "tracking": {"uri": f"sqlite:///{tmp}/mlflow-c{concurrency}.db"}}  # fmt: skip
    plan = load_plan(spec)
    import ray

    from xtuner.sweep.tune import init_ray

    t0 = time.perf_counter()
    init_ray()
    ray_start = time.perf_counter() - t0
    t0, t_sweep = time.perf_counter(), time.time()
    state = run_sweep(plan, quiet=True)
    wall = time.perf_counter() - t0
    ray.shutdown()
    assert state.finished and all(r.state == "done" for r in state.trials.values())
    recs = sorted(state.trials.values(), key=lambda r: r.start_time)
    return {"wall_s": wall, "ray_start_s": ray_start, "trials": len(state.trials),
            "first_trial_start_s": recs[0].start_time - t_sweep,
            "trial_durations_s": [round(r.end_time - r.start_time, 2) for r in recs],
            "train_eval_s": [round(r.final["train_seconds"] + r.final["eval_seconds"], 2) for r in recs]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--max-train", type=int, default=1500)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", help="write the numbers as JSON here")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = {"runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for c in args.concurrency:
            times = standalone(args, c)
            r = sweep(args, c, Path(tmp))
            r.update(standalone_s=times)
            ideal = sum(times) / c
            r.update(
                concurrency=c,
                overhead=r["wall_s"] / ideal,
                overhead_with_ray_start=(r["wall_s"] + r["ray_start_s"]) / ideal,
            )
            out["runs"].append(r)
            print(f"sweep c={c}: wall {r['wall_s']:.1f} s (+ Ray start {r['ray_start_s']:.1f} s), ideal {ideal:.1f} s "
                  f"-> overhead {r['overhead']:.2f} ({r['overhead_with_ray_start']:.2f} with Ray's start)", flush=True)  # fmt: skip
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
