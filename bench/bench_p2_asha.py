"""P2: epochs ASHA runs vs the full grid, and whether both pick the same best configuration (goal >= 3x fewer).

    python bench/bench_p2_asha.py [--lrs 1e-5 3e-5 1e-4 3e-4 1e-3 2e-3 3e-3 5e-3 1e-2] [--epochs 12]
                                  [--reduction-factor 3] [--concurrency 2] [--asha-seeds 0 1 2]

The same grid (synth-udpos fine-tuning over the learning rates, one seed) runs twice through `run_sweep`: once
with `scheduler: none` and once with ASHA (grace 1 epoch, the given reduction factor). Epochs run = the en-dev
evaluations the trials reported (one per epoch). The best configuration is the learning rate with the best
en-dev F1 among finished trials, as the sweep's table picks it. Under ASHA the grid runs in a shuffled order
(`search_seed`), so ASHA runs once per seed given.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def run(args: argparse.Namespace, scheduler: dict, tmp: Path, seed: int = 0) -> dict:
    from xtuner.sweep.report import best_configs
    from xtuner.sweep.runner import load_plan, run_sweep

    name = f"p2-{scheduler['type']}-{seed}"
    spec = {"name": name, "model": "builtin:tiny-xlmr", "tasks": ["synth-udpos"],
            "methods": {"finetune": {"lr": args.lrs}}, "epochs": args.epochs, "scheduler": scheduler,
            "max_concurrent": args.concurrency, "storage": str(tmp / "results"), "search_seed": seed,
            "tracking": {"uri": f"sqlite:///{tmp}/{name}.db"},
            "trial": {"max_train_examples": args.max_train, "max_eval_examples": 64, "max_seq_length": 64,
                      "batch_size": 32, "languages": ["en", "s3"]}}  # fmt: skip
    t0 = time.perf_counter()
    state = run_sweep(load_plan(spec), quiet=True)
    wall = time.perf_counter() - t0
    (best,) = best_configs(state)
    return {
        "scheduler": scheduler["type"],
        "search_seed": seed,
        "wall_s": wall,
        "epochs_run": sum(len(r.dev_curve) for r in state.trials.values()),
        "states": {s: n for s, n in state.counts().items() if n},
        "best_lr": best["config"]["lr"],
        "best_dev_f1": best["dev_en"],
        "curves": {r.params["lr"]: [round(v, 1) for _, v in r.dev_curve] for r in state.trials.values()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--lrs", type=float, nargs="+", default=[1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2]
    )
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument(
        "--asha-seeds", type=int, nargs="+", default=[0, 1, 2], help="search_seed of each ASHA run"
    )
    ap.add_argument("--reduction-factor", type=float, default=3)
    ap.add_argument("--max-train", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--out", help="write the numbers as JSON here")
    args = ap.parse_args()
    asha_cfg = {"type": "asha", "grace_period": 1, "reduction_factor": args.reduction_factor}
    with tempfile.TemporaryDirectory() as tmp:
        full = run(args, {"type": "none"}, Path(tmp))
        ashas = [run(args, asha_cfg, Path(tmp), seed) for seed in args.asha_seeds]
    out = {"full": full, "asha": ashas}
    print(json.dumps(out, indent=1))
    for asha in ashas:  # the grid's run order under ASHA is shuffled with search_seed
        print(f"epochs: full grid {full['epochs_run']}, ASHA (search_seed {asha['search_seed']}) {asha['epochs_run']} "
              f"-> {full['epochs_run'] / asha['epochs_run']:.2f}x fewer; best lr {full['best_lr']:g} "
              f"(dev {full['best_dev_f1']:.1f}) vs {asha['best_lr']:g} (dev {asha['best_dev_f1']:.1f}); "
              f"wall {full['wall_s']:.0f} s vs {asha['wall_s']:.0f} s")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
