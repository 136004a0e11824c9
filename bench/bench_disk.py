"""Disk use of a long sweep under checkpoint retention (issue 6: "disk use stays bounded by checkpoint retention").

A sweep of many trials x many epochs (finetune and deep_prompt, no early stopping, every trial trains to the end,
a checkpoint reported after every epoch) runs on a local Ray with the tiny built-in encoder. A thread samples
every 0.2 s:

- the sweep's storage folder (Tune's experiment state, the reported checkpoints, the sweep state file);
- the trials' temp output folders (``XTUNER_TMP``: the Trainer's own checkpoints, ``save_total_limit=2``);
- the size of every reported checkpoint folder it sees, per method.

It prints (and writes as JSON) the peak and final sizes, the number of checkpoints reported, and what keeping
every reported checkpoint would have cost (reports x mean checkpoint size of the method): the unbounded figure
that retention avoids. The bound is ``max_concurrent x num_to_keep x checkpoint size`` in storage plus
``max_concurrent x 2 x checkpoint size`` in the temp folders, independent of the number of trials and epochs.

    XTUNER_NUM_THREADS=1 .venv/bin/python bench/bench_disk.py --out bench/results/disk.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path


def du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):  # removed while walking
                total += os.lstat(os.path.join(root, f)).st_size
    return total


class Sampler(threading.Thread):
    def __init__(self, storage: Path, tmp: Path, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.storage, self.tmp, self.period = storage, tmp, period
        self.peak_storage = self.peak_tmp = self.peak_total = 0
        self.peak_live_ckpts = 0
        self.ckpt_size: dict[str, int] = {}  # storage checkpoint folder -> size (largest seen)
        self.samples: list[tuple[float, int, int]] = []
        self._halt = threading.Event()
        self.t0 = time.time()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()

    def sample(self) -> None:
        s, t = du(self.storage), du(self.tmp)
        live = 0
        for ck in self.storage.glob("*/trial_*/checkpoint_*"):
            live += 1
            size = du(ck)
            self.ckpt_size[str(ck)] = max(self.ckpt_size.get(str(ck), 0), size)
        self.peak_storage, self.peak_tmp = max(self.peak_storage, s), max(self.peak_tmp, t)
        self.peak_total = max(self.peak_total, s + t)
        self.peak_live_ckpts = max(self.peak_live_ckpts, live)
        self.samples.append((round(time.time() - self.t0, 1), s, t))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lrs", type=int, default=4, help="learning rates per method (trials = 2 x this)")
    ap.add_argument("--num-to-keep", type=int, default=1)
    ap.add_argument("--max-concurrent", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="xtuner-bench-disk-"))
    tmp = work / "trial-tmp"
    tmp.mkdir()
    os.environ["XTUNER_TMP"] = str(tmp)  # trial output folders land here (Ray's local workers inherit it)
    from xtuner.sweep.runner import load_plan, run_sweep

    lrs = [1e-3 * (i + 1) for i in range(args.lrs)]
    spec = {
        "name": "disk",
        "model": "builtin:tiny-xlmr",
        "tasks": ["synth-xnli"],
        "methods": {"finetune": {"lr": [x / 10 for x in lrs]}, "deep_prompt": {"lr": [x * 10 for x in lrs], "psl": [8]}},
        "epochs": args.epochs,
        "max_concurrent": args.max_concurrent,
        "scheduler": {"type": "none"},
        "checkpoints": {"num_to_keep": args.num_to_keep},
        "trial": {"max_train_examples": 128, "max_eval_examples": 32, "max_seq_length": 32, "batch_size": 32,
                  "eval_batch_size": 32, "languages": ["en", "s3"]},
        "tracking": {"enabled": False},
        "storage": str(work / "results"),
    }  # fmt: skip
    sampler = Sampler(work / "results", tmp)
    sampler.start()
    t0 = time.time()
    try:
        state = run_sweep(load_plan(spec), quiet=True)
    finally:
        sampler.stop()
    seconds = time.time() - t0

    reports = defaultdict(int)
    for rec in state.trials.values():
        reports[rec.method] += len(rec.dev_curve)
    sizes = defaultdict(list)
    trial_method = {f"trial_{tid}": rec.method for tid, rec in state.trials.items()}
    for path, size in sampler.ckpt_size.items():
        sizes[trial_method.get(Path(path).parent.name, "?")].append(size)
    mean = {m: sum(v) / len(v) for m, v in sizes.items() if v}
    unbounded = sum(reports[m] * mean.get(m, 0) for m in reports)
    result = {
        "trials": len(state.trials),
        "epochs": args.epochs,
        "max_concurrent": args.max_concurrent,
        "num_to_keep": args.num_to_keep,
        "states": state.counts(),
        "seconds": round(seconds, 1),
        "checkpoints_reported": dict(reports),
        "mean_checkpoint_bytes": {m: round(v) for m, v in mean.items()},
        "max_checkpoint_bytes": {m: max(v) for m, v in sizes.items() if v},
        "peak_storage_bytes": sampler.peak_storage,
        "peak_trial_tmp_bytes": sampler.peak_tmp,
        "peak_total_bytes": sampler.peak_total,
        "peak_live_checkpoints_in_storage": sampler.peak_live_ckpts,
        "final_storage_bytes": du(work / "results"),
        "final_trial_tmp_bytes": du(tmp),
        "unbounded_storage_bytes": round(unbounded),
    }
    mb = 1e6
    print(f"{result['trials']} trials x {args.epochs} epochs ({dict(reports)} checkpoints reported), "
          f"max_concurrent {args.max_concurrent}, num_to_keep {args.num_to_keep}, {seconds:.0f} s")  # fmt: skip
    print("checkpoint size (mean): " + ", ".join(f"{m} {v / mb:.2f} MB" for m, v in mean.items()))
    print(f"peak storage {sampler.peak_storage / mb:.1f} MB, peak trial temp {sampler.peak_tmp / mb:.1f} MB, "
          f"peak together {sampler.peak_total / mb:.1f} MB; at most {sampler.peak_live_ckpts} checkpoints in storage")  # fmt: skip
    print(f"after the sweep: storage {result['final_storage_bytes'] / mb:.2f} MB, trial temp "
          f"{result['final_trial_tmp_bytes'] / mb:.2f} MB")  # fmt: skip
    print(f"keeping every reported checkpoint would take {unbounded / mb:.1f} MB")
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "samples": sampler.samples}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
