"""GPU-hours and a node plan for a sweep, from plain numbers (no Ray, no torch), for `xtuner sweep run --dry-run`.

A trial is a flat dict: the run_trial config (``model``, ``method``, ``task``, ``epochs``, ``max_seq_length``,
``max_train_examples``, ``max_eval_examples``, ``languages``) plus its resources (``gpu``, ``cpu``), and optionally
``train_examples`` / ``dev_examples`` / ``test_examples`` for tasks that `TASK_SIZES` does not know.

Work of one trial, in examples: ``epochs x train + evals x dev + test`` over the evaluated languages, where
``evals`` is one English dev evaluation per epoch, or per ``eval_interval`` optimizer steps (``batch_size x
grad_accum_steps`` examples each) when the trial sets one, and ``dev`` is the size of its ``dev_split`` (MNLI
matched is 9,815 pairs, XNLI en dev 2,490). Evaluation is forward-only, `EVAL_SPEEDUP` times faster than training. Time is
work / `throughput(model, method, max_seq_length)`. GPU-hours are the time a trial keeps one whole GPU busy. A trial
that takes a fraction f of a GPU, such as two prompt-tuning trials on one GPU at f = 0.5, is assumed to run 1/f times
slower. It keeps the same GPU-hours. A trial with k whole GPUs is assumed to run k times faster. This is conservative, because small-batch prompt tuning rarely fills a GPU alone.
Every trial is assumed to run to the end, so with ASHA the real cost is lower.

THROUGHPUT IS MEASURED ON ONE GPU TYPE ONLY. `THROUGHPUT` holds training examples per second at 128 tokens,
batch 32, bf16 autocast, on one NVIDIA H200, measured by ``bench/bench_gpu.py`` (bench/GPU.md): the paper's model
shapes (xlm-roberta-base and -large built from their configs) through xtuner's own method builders, forward +
backward + AdamW over the trainable tensors, eager PyTorch (no compile, no fused kernels). `GPU_SPEED` gives other
GPUs relative to the H200; those ratios are NOT measured (peak FLOP/s and memory bandwidth, discounted; expect
+-50 %). Evaluation is forward-only; its measured speed was 3.2x to 10x the training speed (bench/GPU.md), and
`EVAL_SPEEDUP` takes the low end. Time scales linearly with max_seq_length (every example is counted as padded to
it; attention's quadratic share is small at <= 512 tokens for these widths). `TASK_SIZES` holds the English train/dev sizes and the test size
per language of the XTREME tasks (Hu et al. 2020, Table 1; UD-POS, PAN-X, MLQA and TyDiQA test sizes vary by language
and are rough averages).
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xtuner.errors import XtunerError, unknown_name

REFERENCE_GPU = "H200"
REFERENCE_SEQ = 128
EVAL_SPEEDUP = 3.0  # forward-only evaluation vs a training step, per example (measured 3.2-10x on the H200)

# training examples / second, one H200, bf16 autocast, batch 32 x 128 tokens: MEASURED (bench/GPU.md, 2026-11-26)
THROUGHPUT: dict[tuple[str, str], float] = {
    ("xlm-roberta-large", "finetune"): 382.0,
    ("xlm-roberta-large", "deep_prompt"): 542.0,
    ("xlm-roberta-large", "soft_prompt"): 568.0,
    ("xlm-roberta-large", "lora"): 408.0,
    ("xlm-roberta-base", "finetune"): 757.0,
    ("xlm-roberta-base", "deep_prompt"): 1171.0,
    ("xlm-roberta-base", "soft_prompt"): 1013.0,
    ("xlm-roberta-base", "lora"): 842.0,
}
# training speed relative to the H200: NOT MEASURED (peak FLOP/s and memory bandwidth, discounted; rough)
GPU_SPEED: dict[str, float] = {"H200": 1.0, "H100": 0.9, "A100": 0.45, "A10G": 0.14, "L4": 0.11}

# English train / English dev / test examples per language (XTREME, Hu et al. 2020)
TASK_SIZES: dict[str, dict[str, int]] = {
    "xnli": {"train": 392_702, "dev": 2_490, "test_per_lang": 5_010},
    "pawsx": {"train": 49_401, "dev": 2_000, "test_per_lang": 2_000},
    "udpos": {"train": 21_253, "dev": 3_974, "test_per_lang": 1_000},
    "panx": {"train": 20_000, "dev": 10_000, "test_per_lang": 5_000},
    "xquad": {"train": 87_599, "dev": 10_570, "test_per_lang": 1_190},
    "mlqa": {"train": 87_599, "dev": 1_148, "test_per_lang": 5_000},
    "tydiqa": {"train": 3_696, "dev": 10_570, "test_per_lang": 700},  # selects on SQuAD v1.1 dev
}
TASK_LANGUAGES = {"xnli": 15, "pawsx": 7, "udpos": 33, "panx": 40, "xquad": 11, "mlqa": 7, "tydiqa": 9}
# other English dev splits a trial may select on (TrialConfig.dev_split)
DEV_SIZES: dict[tuple[str, str], int] = {("xnli", "mnli_matched"): 9_815}

# the GPU worker types of cluster.yaml (tests/test_cluster_config.py keeps the two in step)
WORKER_TYPES: dict[str, dict[str, Any]] = {
    "gpu-a10g-spot": {"gpu_type": "A10G", "gpus": 1, "cpus": 8, "max_workers": 8},
    "gpu-a100x8": {"gpu_type": "A100", "gpus": 8, "cpus": 96, "max_workers": 2},
}


def model_key(model: str) -> str:
    """``FacebookAI/xlm-roberta-large`` -> ``xlm-roberta-large`` (hub organisation dropped, lower case)."""
    return str(model).rstrip("/").rsplit("/", 1)[-1].lower()


def throughput(model: str, method: str, *, max_seq_length: int = REFERENCE_SEQ, gpu_type: str = REFERENCE_GPU,
               table: Mapping[tuple[str, str], float] | None = None) -> float:  # fmt: skip
    """Training examples/second of one trial alone on one GPU of `gpu_type` (ROUGH)."""
    table = THROUGHPUT if table is None else table
    key = (model_key(model), method)
    if key not in table:
        raise unknown_name(
            "model/method pair", "/".join(key), ["/".join(k) for k in table], where="in the throughput table"
        )
    if gpu_type not in GPU_SPEED:
        raise unknown_name("GPU type", gpu_type, GPU_SPEED)
    return table[key] * GPU_SPEED[gpu_type] * REFERENCE_SEQ / max(int(max_seq_length), 1)


def trial_examples(trial: Mapping[str, Any]) -> tuple[float, float, float]:
    """(train examples per epoch, dev examples per epoch, test examples) of one trial."""
    task = str(trial.get("task", ""))
    sizes = TASK_SIZES.get(task, {})
    train = trial.get("train_examples", sizes.get("train"))
    if train is None:
        raise XtunerError(
            f"task {task!r}: unknown size; give train_examples (known tasks: {', '.join(sorted(TASK_SIZES))})"
        )
    dev = trial.get("dev_examples", DEV_SIZES.get((task, str(trial.get("dev_split"))), sizes.get("dev", 0)))
    if "test_examples" in trial:
        test = trial["test_examples"]
    else:
        langs = trial.get("languages")
        n_langs = len(langs) if langs else TASK_LANGUAGES.get(task, 1)
        test = n_langs * sizes.get("test_per_lang", 0)
    cap_train, cap_eval = trial.get("max_train_examples"), trial.get("max_eval_examples")
    if cap_train:
        train = min(train, cap_train)
    if cap_eval:
        dev = min(dev, cap_eval)
        n = len(trial.get("languages") or []) or TASK_LANGUAGES.get(task, 1)
        test = min(test, cap_eval * n)
    return float(train), float(dev), float(test)


def trial_gpu_hours(trial: Mapping[str, Any], *, gpu_type: str = REFERENCE_GPU,
                    table: Mapping[tuple[str, str], float] | None = None) -> float:  # fmt: skip
    """Hours one whole GPU of `gpu_type` is busy with this trial (0 for CPU-only trials)."""
    if float(trial.get("gpu", 1)) <= 0:
        return 0.0
    train, dev, test = trial_examples(trial)
    epochs = float(trial.get("epochs", 3))
    tput = throughput(trial["model"], trial["method"], max_seq_length=int(trial.get("max_seq_length", REFERENCE_SEQ)),
                      gpu_type=gpu_type, table=table)  # fmt: skip
    seconds = epochs * train / tput + (dev_evaluations(trial, train) * dev + test) / (tput * EVAL_SPEEDUP)
    return seconds / 3600.0


def dev_evaluations(trial: Mapping[str, Any], train: float) -> float:
    """English dev evaluations of a trial: one per epoch, or one per `eval_interval` optimizer steps."""
    epochs = float(trial.get("epochs", 3))
    interval = trial.get("eval_interval")
    if not interval:
        return epochs
    per_update = int(trial.get("batch_size", 32)) * int(trial.get("grad_accum_steps", 1))
    return math.ceil(epochs * math.ceil(train / per_update) / int(interval))


@dataclass
class GpuEstimate:
    gpu_type: str
    total_hours: float
    by_group: dict[str, tuple[int, float]]  # "task/method/model" -> (trials, GPU-hours)
    unknown: list[str] = field(default_factory=list)  # trials left out, with the reason
    cpu_only: int = 0


def estimate_gpu_hours(trials: Iterable[Mapping[str, Any]], *, gpu_type: str = REFERENCE_GPU,
                       table: Mapping[tuple[str, str], float] | None = None) -> GpuEstimate:  # fmt: skip
    """Sum of `trial_gpu_hours`; trials whose model/method/task is not in the tables are listed in `unknown`."""
    by_group: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    unknown: dict[str, int] = defaultdict(int)
    cpu_only = 0
    for t in trials:
        if float(t.get("gpu", 1)) <= 0:
            cpu_only += 1
            continue
        label = f"{t.get('task', '?')}/{t.get('arm', t.get('method', '?'))}/{model_key(t.get('model', '?'))}"
        try:
            hours = trial_gpu_hours(t, gpu_type=gpu_type, table=table)
        except XtunerError as e:
            unknown[f"{label}: {str(e).split(';')[0]}"] += 1
            continue
        by_group[label][0] += 1
        by_group[label][1] += hours
    groups = {k: (int(v[0]), float(v[1])) for k, v in sorted(by_group.items())}
    return GpuEstimate(gpu_type, sum(h for _, h in groups.values()), groups,
                       [f"{k} ({n} trials)" for k, n in sorted(unknown.items())], cpu_only)  # fmt: skip


# ------------------------------------------------------------------------------------------------ node plan
@dataclass
class NodePlan:
    worker_type: str
    gpu_type: str
    gpus_per_node: int
    nodes: int  # nodes the plan uses (capped by max_workers)
    nodes_for_all: int  # nodes that would run every trial at once
    concurrent_trials: int  # trials running at once at the start
    gpu_hours: float  # on this GPU type
    wall_hours: float  # makespan of the schedule (perfect packing, no failures, every trial to the end)
    trials: int


def plan_nodes(trials: Iterable[Mapping[str, Any]], worker: Mapping[str, Any] | str = "gpu-a100x8", *,
               max_workers: int | None = None, table: Mapping[tuple[str, str], float] | None = None) -> NodePlan:  # fmt: skip
    """How many GPU workers of one type, and roughly how long: first-fit packing of trials onto GPUs (a trial with
    gpu < 1 shares one GPU, e.g. two prompt-tuning trials at 0.5; gpu >= 1 takes whole GPUs of one node), longest
    trials first, then a list-scheduling simulation on the nodes the plan keeps."""
    name = worker if isinstance(worker, str) else str(worker.get("name", "custom"))
    if isinstance(worker, str):
        if worker not in WORKER_TYPES:
            raise unknown_name("worker type", worker, WORKER_TYPES)
        worker = WORKER_TYPES[worker]
    gpus, cpus, gpu_type = int(worker["gpus"]), float(worker["cpus"]), str(worker["gpu_type"])
    cap = max_workers if max_workers is not None else int(worker.get("max_workers", 1))
    jobs = []  # (wall hours, gpu fraction, cpus)
    for t in trials:
        f, c = float(t.get("gpu", 1)), float(t.get("cpu", 1))
        if f <= 0:
            continue
        if (f > 1 and (f != int(f) or f > gpus)) or c > cpus:
            raise XtunerError(f"a trial needs {f:g} GPU and {c:g} CPU; worker type {name!r} has {gpus} GPUs and "
                              f"{cpus:g} CPUs per node")  # fmt: skip
        jobs.append((trial_gpu_hours(t, gpu_type=gpu_type, table=table) / f, f, c))  # wall hours at its share
    jobs.sort(key=lambda j: -j[0])
    if not jobs:
        return NodePlan(name, gpu_type, gpus, 0, 0, 0, 0.0, 0.0, 0)
    gpu_hours = sum(w * f for w, f, _ in jobs)
    nodes_all = len(_pack([(f, c) for _, f, c in jobs], gpus, cpus, math.inf))
    nodes = max(1, min(nodes_all, cap))
    wall, first = _simulate(jobs, nodes, gpus, cpus)
    return NodePlan(name, gpu_type, gpus, nodes, nodes_all, first, gpu_hours, wall, len(jobs))


def _fits(node: list, f: float, c: float) -> list[int] | None:
    gfree, cfree = node
    if cfree + 1e-9 < c:
        return None
    if f <= 1:
        for i, g in enumerate(gfree):
            if g + 1e-9 >= f:
                return [i]
        return None
    whole = [i for i, g in enumerate(gfree) if g >= 1 - 1e-9]
    return whole[: int(f)] if len(whole) >= f else None


def _take(node: list, idx: list[int], f: float, c: float, sign: float = -1.0) -> None:
    per_gpu = f if f <= 1 else 1.0
    for i in idx:
        node[0][i] += sign * per_gpu
    node[1] += sign * c


def _pack(items: list[tuple[float, float]], gpus: int, cpus: float, max_nodes: float) -> list[list]:
    nodes: list[list] = []
    for f, c in items:
        for node in nodes:
            idx = _fits(node, f, c)
            if idx is not None:
                _take(node, idx, f, c)
                break
        else:
            if len(nodes) >= max_nodes:
                continue
            node = [[1.0] * gpus, cpus]
            _take(node, _fits(node, f, c) or [], f, c)
            nodes.append(node)
    return nodes


def _simulate(
    jobs: list[tuple[float, float, float]], n_nodes: int, gpus: int, cpus: float
) -> tuple[float, int]:
    """Makespan (hours) of greedy list scheduling, longest first, and how many trials start at time 0."""
    nodes = [[[1.0] * gpus, cpus] for _ in range(n_nodes)]
    pending = list(jobs)
    running: list[tuple[float, int, int, tuple]] = []
    now, first, seq = 0.0, 0, 0
    while pending or running:
        still = []
        for job in pending:
            wall, f, c = job
            for k, node in enumerate(nodes):
                idx = _fits(node, f, c)
                if idx is not None:
                    _take(node, idx, f, c)
                    heapq.heappush(running, (now + wall, seq, k, (idx, f, c)))
                    seq += 1
                    first += now == 0.0
                    break
            else:
                still.append(job)
        pending = still
        if not running:
            break
        end, _, k, (idx, f, c) = heapq.heappop(running)
        now = end
        _take(nodes[k], idx, f, c, sign=+1.0)
    return now, first


def estimate_lines(
    trials: Iterable[Mapping[str, Any]], worker_types: Iterable[str] | None = None
) -> list[str]:
    """Printable dry-run lines: GPU-hours (H200, rough) per task/method/model, and a node plan per worker type."""
    trials = list(trials)
    est = estimate_gpu_hours(trials)
    lines = [f"GPU-hours (rough, {REFERENCE_GPU}-equivalent, every trial to the end): {est.total_hours:.1f}"]
    lines += [
        f"  {label}: {n} trial{'' if n == 1 else 's'}, {h:.1f} GPU-h"
        for label, (n, h) in est.by_group.items()
    ]
    lines += [f"  not estimated: {u}" for u in est.unknown]
    if est.cpu_only:
        lines.append(f"  {est.cpu_only} trials ask for no GPU")
    known = [t for t in trials if float(t.get("gpu", 1)) > 0 and _known(t)]
    for wt in worker_types if worker_types is not None else WORKER_TYPES:
        if not known:
            break
        try:
            p = plan_nodes(known, wt)
        except XtunerError as e:
            lines.append(f"node plan {wt}: {e}")
            continue
        more = f" ({p.nodes_for_all} to run all at once)" if p.nodes_for_all > p.nodes else ""
        lines.append(f"node plan {p.worker_type}: {p.nodes} x {p.gpus_per_node} {p.gpu_type}{more}, {p.concurrent_trials} "
                     f"trials at once, about {p.wall_hours:.1f} h wall-clock, {p.gpu_hours:.1f} {p.gpu_type} GPU-h")  # fmt: skip
    return lines


def _known(trial: Mapping[str, Any]) -> bool:
    try:
        trial_gpu_hours(trial)
        return True
    except XtunerError:
        return False
