"""Refuse, before Tune starts, a sweep whose trials can never be placed on the cluster.

Tune keeps a trial PENDING for ever when no node can ever satisfy its resource request (it only logs "insufficient
resources"). So before the sweep starts we compare what one trial asks for with what the cluster has now
(``ray.nodes()``) and with what its autoscaler could add: the node types with ``max_workers`` > 0 and their resources,
as Ray publishes them in the GCS (Ray Train does the same check) or as `ray up` leaves them on the head. A trial fits
when ONE node, running or launchable, has the GPUs (and CPUs) it asks for: a trial never spans nodes. `gpu_shortfall`
is the pure rule; `check_cluster_resources` feeds it from a running Ray.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from xtuner.errors import XtunerError

log = logging.getLogger(__name__)
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"  # written on the head by `ray up`


@dataclass(frozen=True)
class Capacity:
    """What a cluster can offer one trial: the biggest node now and the biggest node its autoscaler can add."""

    total_gpu: float  # GPUs in the cluster now
    total_cpu: float
    node_gpu: float  # most GPUs on one running node
    node_cpu: float  # most CPUs on one running node (on the node with the most GPUs when gpu > 0)
    launchable_gpu: float = 0.0  # most GPUs on one node type the autoscaler may still launch
    launchable_cpu: float = 0.0


def gpu_shortfall(gpu_per_trial: float, cap: Capacity, cpu_per_trial: float = 0.0) -> str | None:
    """None when a trial fits on some node (running or launchable); else the reason, with the numbers."""
    need_g, need_c = float(gpu_per_trial), float(cpu_per_trial)
    if need_g < 0 or need_c < 0:
        raise XtunerError(f"resources per trial must be >= 0 (gpu {need_g:g}, cpu {need_c:g})")
    for g, c in ((cap.node_gpu, cap.node_cpu), (cap.launchable_gpu, cap.launchable_cpu)):
        if g >= need_g and c >= need_c:
            return None
    if need_g > 0 and max(cap.node_gpu, cap.launchable_gpu) < need_g:
        have = f"cluster has {cap.total_gpu:g} GPUs"
        if cap.total_gpu > cap.node_gpu:
            have += f" (at most {cap.node_gpu:g} on one node)"
        if cap.launchable_gpu:
            have += f" and can add nodes with at most {cap.launchable_gpu:g}"
        return f"needs {need_g:g} GPU per trial, {have}"
    return (f"needs {need_c:g} CPU per trial on a node with {need_g:g} GPU; the largest such node has "
            f"{max(cap.node_cpu, cap.launchable_cpu):g} CPUs")  # fmt: skip


def capacity_from_nodes(
    nodes: Iterable[Mapping], max_node_types: Mapping[str, Mapping[str, float]] | None = None
) -> Capacity:
    """Capacity from ``ray.nodes()`` entries (alive ones) and node-type resources the autoscaler may launch."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", n.get("alive", True))]
    total_gpu = sum(float(r.get("GPU", 0)) for r in alive)
    total_cpu = sum(float(r.get("CPU", 0)) for r in alive)
    best = max(alive, key=lambda r: (float(r.get("GPU", 0)), float(r.get("CPU", 0))), default={})
    types = list((max_node_types or {}).values())
    best_type = max(types, key=lambda r: (float(r.get("GPU", 0)), float(r.get("CPU", 0))), default={})
    return Capacity(total_gpu=total_gpu, total_cpu=total_cpu, node_gpu=float(best.get("GPU", 0)),
                    node_cpu=float(best.get("CPU", 0)), launchable_gpu=float(best_type.get("GPU", 0)),
                    launchable_cpu=float(best_type.get("CPU", 0)))  # fmt: skip


def launchable_node_types(
    bootstrap_config: str | Path | None = BOOTSTRAP_CONFIG,
) -> dict[str, dict[str, float]]:
    """Node types the autoscaler may still launch (max workers > 0) with their resources; {} without an autoscaler.

    First the cluster config the autoscaler publishes in the GCS (a private Ray API, so any failure is ignored), then
    the autoscaling config that `ray up` leaves on the head (``~/ray_bootstrap_config.yaml``; the sweep driver of a
    submitted job runs on the head)."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception as e:  # noqa: BLE001 - absent on local clusters and older Rays
        log.debug("no autoscaler cluster config in the GCS: %s", e)
        config = None
    out: dict[str, dict[str, float]] = {}
    for group in getattr(config, "node_group_configs", None) or []:
        if group.max_count != 0:  # -1 means unbounded
            out[group.name or f"group{len(out)}"] = {k: float(v) for k, v in group.resources.items()}
    if out or bootstrap_config is None:
        return out
    path = Path(bootstrap_config).expanduser()
    try:
        raw = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError) as e:
        log.debug("cannot read %s: %s", path, e)
        return out
    if not isinstance(raw, dict):
        return out
    head = raw.get("head_node_type")
    for name, node_type in (raw.get("available_node_types") or {}).items():
        if name != head and isinstance(node_type, dict) and int(node_type.get("max_workers", 0) or 0) > 0:
            out[str(name)] = {k: float(v) for k, v in (node_type.get("resources") or {}).items()}
    return out


def check_cluster_resources(
    required_gpu_per_trial: float,
    address: str | None = None,
    *,
    required_cpu_per_trial: float = 0.0,
    bootstrap_config: str | Path | None = BOOTSTRAP_CONFIG,
) -> Capacity:
    """Raise XtunerError if no node of the running Ray cluster (or that its autoscaler can add) fits one trial.

    Uses the Ray this process is connected to; if none, connects to `address` (or RAY_ADDRESS). It never starts a
    new local Ray: without a cluster to ask there is nothing to check, and that is an error too."""
    import ray

    if not ray.is_initialized():
        target = address or os.environ.get("RAY_ADDRESS")
        if not target:
            raise XtunerError(
                "no Ray cluster to check: connect first (ray.init) or give an address / RAY_ADDRESS"
            )
        try:
            ray.init(address=target, log_to_driver=False)
        except Exception as e:
            raise XtunerError(
                f"cannot connect to the Ray cluster at {target}: {' '.join(str(e).split())[:300]}"
            ) from None
    cap = capacity_from_nodes(ray.nodes(), launchable_node_types(bootstrap_config))
    problem = gpu_shortfall(required_gpu_per_trial, cap, required_cpu_per_trial)
    if problem:
        hint = ("add GPU worker types to the cluster (cluster.yaml: available_node_types with resources: {GPU: N})"
                if cap.launchable_gpu == 0 and cap.node_gpu == 0 else "lower resources.gpu / resources.cpu in the spec")  # fmt: skip
        raise XtunerError(f"this sweep can never start: {problem}; {hint}")
    return cap
