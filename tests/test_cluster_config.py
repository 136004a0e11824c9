"""cluster.yaml and deploy/kuberay-rayjob.yaml: valid for Ray's own validator, secure by default, GPUs requested.

`ray up` runs `prepare_config` (merge the provider's defaults, setup commands, docker checks, per-type worker
bounds) and then `validate_config` (Ray's JSON schema plus cross-field checks) before touching the cloud; these
tests run the same two functions on the file as shipped.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from xtuner.cluster.estimate import WORKER_TYPES
from xtuner.cluster.redact import is_secret_key

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster.yaml"
RAYJOB = ROOT / "deploy" / "kuberay-rayjob.yaml"

# things that must never be written into a config: cloud keys, passwords in URIs, inline tokens, private keys
SECRET_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"aws_secret_access_key", re.I),
    re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^@/\s]+@", re.I),  # scheme://user:password@host
    re.compile(r"(RAY_AUTH_TOKEN|MLFLOW_TRACKING_PASSWORD|MLFLOW_TRACKING_TOKEN|HF_TOKEN)=\S"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(password|passwd|secret)\s*[=:]\s*\S", re.I),
]


def load_cluster() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER.read_text())


def prepared(cfg: dict[str, Any]) -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(copy.deepcopy(cfg))


def walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """(dotted path, leaf) for every leaf; dict keys are part of the path."""
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in walk(v, f"{path}.{k}" if path else str(k))]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in walk(v, f"{path}[{i}]")]
    return [(path, node)]


def commands(cfg: dict[str, Any]) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")  # fmt: skip
    return [c for k in keys for c in cfg.get(k) or []]


# ------------------------------------------------------------------------------------------------ validity
def test_cluster_yaml_passes_rays_validator() -> None:
    from ray.autoscaler._private.util import validate_config

    cfg = prepared(load_cluster())
    validate_config(cfg)  # raises jsonschema.ValidationError / ValueError on a bad config
    assert cfg["provider"]["type"] == "aws"
    assert cfg["head_node_type"] in cfg["available_node_types"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.update(worker_nodez={}),  # unknown top-level key
        lambda c: c["available_node_types"]["gpu-a10g-spot"]["resources"].update(
            GPU=0.5
        ),  # resources are integers
        lambda c: c.update(head_node_type="no-such-type"),
        lambda c: c.update(max_workers=1) or c["available_node_types"]["gpu-a100x8"].update(min_workers=2),
    ],
    ids=["unknown-key", "fractional-resource", "bad-head-type", "min-above-max"],
)
def test_validator_rejects_broken_variants(mutate) -> None:
    """The validation above can fail: the same validator refuses small breakages of the shipped file."""
    from ray.autoscaler._private.util import validate_config

    cfg = load_cluster()
    mutate(cfg)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        validate_config(prepared(cfg))


# ------------------------------------------------------------------------------------------------ resources
def test_worker_types_request_gpus_and_head_runs_no_trials() -> None:
    cfg = load_cluster()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] == 0
    workers = {name: t for name, t in types.items() if name != cfg["head_node_type"]}
    assert workers, "no worker node types"
    for name, t in workers.items():
        assert t["resources"]["GPU"] >= 1, f"{name} requests no GPU"
        assert 0 <= t["min_workers"] <= t["max_workers"], name
        assert "IamInstanceProfile" in t["node_config"], (
            f"{name} cannot write checkpoints to S3 without a role"
        )
    spot = [
        n
        for n, t in workers.items()
        if t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    ]
    assert spot, "no spot worker type"
    assert sum(t["min_workers"] for t in workers.values()) <= cfg["max_workers"]


def test_estimate_worker_table_matches_cluster_yaml() -> None:
    """`xtuner sweep run --dry-run` plans nodes with xtuner.cluster.estimate.WORKER_TYPES: same types, same sizes."""
    cfg = load_cluster()
    workers = {n: t for n, t in cfg["available_node_types"].items() if n != cfg["head_node_type"]}
    assert set(WORKER_TYPES) == set(workers)
    for name, t in workers.items():
        w = WORKER_TYPES[name]
        assert (w["gpus"], w["cpus"], w["max_workers"]) == (
            t["resources"]["GPU"],
            t["resources"]["CPU"],
            t["max_workers"],
        )


# ------------------------------------------------------------------------------------------------ versions
def test_images_match_installed_ray_and_setup_pins_it() -> None:
    import ray

    cfg = load_cluster()
    version = ray.__version__
    assert re.fullmatch(rf"rayproject/ray:{re.escape(version)}-py311-cu12\d", cfg["docker"]["image"])
    assert cfg["docker"]["head_image"] == f"rayproject/ray:{version}-py311"
    setup = " ".join(cfg["setup_commands"])
    assert "~/xtuner-src" in setup and f"=={version}" in setup
    assert cfg["file_mounts"]["~/xtuner-src"] == "."


# ------------------------------------------------------------------------------------------------ security
def test_dashboard_and_mlflow_bind_to_loopback() -> None:
    cfg = load_cluster()
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    mlflow = next(c for c in cfg["head_start_ray_commands"] if "mlflow server" in c)
    assert re.search(r"--host 127\.0\.0\.1\b", mlflow)
    assert re.search(r"--artifacts-destination s3://\S+", mlflow)
    assert "--backend-store-uri" in mlflow
    for cmd in commands(cfg):
        assert "0.0.0.0" not in cmd, cmd
    assert not cfg["provider"].get("security_group", {}).get("IpPermissions"), "extra inbound rules opened"


def test_ray_token_auth_is_on_and_token_comes_from_a_file() -> None:
    cfg = load_cluster()
    assert "--env RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


@pytest.mark.parametrize("path", [CLUSTER, RAYJOB], ids=["cluster.yaml", "kuberay-rayjob.yaml"])
def test_no_secret_values_inline(path: Path) -> None:
    text = path.read_text()
    for pattern in SECRET_PATTERNS:
        assert not pattern.search(text), f"{path.name}: looks like an inline secret: {pattern.pattern}"
    # the patterns do catch what they are meant to catch
    assert any(p.search("postgresql://mlflow:hunter2@db:5432/mlflow") for p in SECRET_PATTERNS)
    assert any(p.search("--env MLFLOW_TRACKING_PASSWORD=hunter2") for p in SECRET_PATTERNS)


def test_secret_named_settings_point_at_files() -> None:
    """In cluster.yaml a secret-named setting (e.g. the Ray token mount) may only name a file, never hold a value."""
    found = []
    for where, value in walk(load_cluster()):
        last = re.split(r"[.\[]", where)[-1]
        if is_secret_key(last) and value not in (None, ""):
            found.append(where)
            assert str(value).startswith(("~/", "/")), f"cluster.yaml: {where} holds a value"
    assert "file_mounts.~/.ray/auth_token" in found


# ------------------------------------------------------------------------------------------------ KubeRay
def test_kuberay_rayjob_manifest() -> None:
    import ray

    docs = list(yaml.safe_load_all(RAYJOB.read_text()))
    job = next(d for d in docs if d and d.get("kind") == "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("python -m xtuner sweep run ")
    assert "--storage s3://" in spec["entrypoint"]
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["shutdownAfterJobFinishes"] is True
    for group in cluster["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1, group["groupName"]
        assert ray.__version__ in container["image"]
        assert group["minReplicas"] <= group["maxReplicas"]
    head_env = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["name"] for e in head_env} >= {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    assert all("valueFrom" in e and "value" not in e for e in head_env if is_secret_key(e["name"]))
