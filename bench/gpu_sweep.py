"""A real Ray Tune sweep on one real GPU: fractional GPUs pack two prompt trials per GPU, whole-GPU trials run alone,
and every trial's process actually computes on the GPU.

Six trials of the tiny built-in encoder on synth-xnli: four deep_prompt trials at ``--prompt-gpu`` (0.5) GPU each
and two finetune trials at ``--finetune-gpu`` (1) GPU each, ``max_concurrent`` 6, tracking off (no MLflow on the GPU
machine). While the sweep runs, a thread samples every 0.25 s:

- Ray's placement groups (each trial's bundle: CPU and GPU asked for), summed over the ones alive at that moment;
- ``nvidia-smi --query-compute-apps``: the processes holding GPU memory.

Afterwards each trial's worker pid (the sweep state's ``pid``) is looked up among the GPU processes. The JSON
(``--out``) has the per-trial states, test scores and pids, the most GPU requested at once (never more than the
one GPU), the most prompt trials placed at once, and the trial pids seen on the GPU.

    PYTHONPATH=. python3 bench/gpu_sweep.py --out gpu_sweep.json                          # on the GPU machine
    XTUNER_NUM_THREADS=1 .venv/bin/python bench/gpu_sweep.py --prompt-gpu 0 --finetune-gpu 0 --small --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path


class Sampler(threading.Thread):
    def __init__(self, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.period = period
        self.peak_gpu = 0.0
        self.peak_groups = 0
        self.peak_half = 0  # bundles asking for a fraction of a GPU, at once
        self.gpu_pids: set[int] = set()
        self.smi_error: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def sample(self) -> None:
        import ray

        gpu, groups, half = 0.0, 0, 0
        for pg in ray.util.placement_group_table().values():
            if pg.get("state") != "CREATED":
                continue
            groups += 1
            for bundle in pg["bundles"].values():
                g = float(bundle.get("GPU", 0.0))
                gpu += g
                half += 0 < g < 1
        self.peak_gpu, self.peak_groups = max(self.peak_gpu, gpu), max(self.peak_groups, groups)
        self.peak_half = max(self.peak_half, half)
        try:
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)  # fmt: skip
            self.gpu_pids.update(int(x) for x in out.stdout.split() if x.strip().isdigit())
        except (OSError, subprocess.SubprocessError) as e:
            self.smi_error = f"{type(e).__name__}: {e}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompt-gpu", type=float, default=0.5)
    ap.add_argument("--finetune-gpu", type=float, default=1.0)
    ap.add_argument("--small", action="store_true", help="CPU rehearsal sizes")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import ray

    from xtuner.sweep.runner import load_plan, run_sweep

    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             num_cpus=max(os.cpu_count() or 2, 2))  # fmt: skip
    resources = ray.cluster_resources()
    n_train = 256 if args.small else 6000
    spec = {
        "name": "gpu-sweep",
        "model": "builtin:tiny-xlmr",
        "tasks": ["synth-xnli"],
        "methods": {"deep_prompt": {"lr": [1e-2, 2e-2, 3e-2, 5e-2], "psl": [8]}, "finetune": {"lr": [1e-4, 3e-4]}},
        "epochs": 2 if args.small else 3,
        "max_concurrent": 6,
        "scheduler": {"type": "none"},
        "resources": {"methods": {"deep_prompt": {"cpu": 1, "gpu": args.prompt_gpu},
                                  "finetune": {"cpu": 1, "gpu": args.finetune_gpu}}},
        "trial": {"max_train_examples": n_train, "max_eval_examples": 500, "languages": ["en", "s1", "s3", "s5"]},
        "tracking": {"enabled": False},
        "storage": tempfile.mkdtemp(prefix="xtuner-gpu-sweep-"),
    }  # fmt: skip
    sampler = Sampler()
    sampler.start()
    t0 = time.time()
    try:
        state = run_sweep(load_plan(spec), quiet=False)
    finally:
        sampler.stop()
        ray.shutdown()
    seconds = time.time() - t0
    trials = {
        tid: {"method": r.method, "lr": r.params.get("lr"), "state": r.state, "pid": r.pid,
              "on_gpu": r.pid in sampler.gpu_pids, "error": r.error,
              "test": {k: round(v, 2) for k, v in r.final.items() if k.startswith("test/") and k.endswith("accuracy")},
              "train_seconds": r.final.get("train_seconds")}
        for tid, r in sorted(state.trials.items())
    }  # fmt: skip
    result = {
        "seconds": round(seconds, 1),
        "cluster_resources": {k: v for k, v in resources.items() if k in ("CPU", "GPU")},
        "finished": state.finished,
        "counts": state.counts(),
        "peak_gpu_requested": sampler.peak_gpu,
        "peak_trials_placed": sampler.peak_groups,
        "peak_fractional_gpu_trials": sampler.peak_half,
        "gpu_pids": sorted(sampler.gpu_pids),
        "nvidia_smi_error": sampler.smi_error,
        "trials": trials,
    }
    Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True))
    print(json.dumps({k: v for k, v in result.items() if k != "trials"}, sort_keys=True))
    for tid, t in trials.items():
        print(tid, t["method"], t["lr"], t["state"], "pid", t["pid"], "on GPU" if t["on_gpu"] else "not seen on GPU",
              t["test"], t["train_seconds"])  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
