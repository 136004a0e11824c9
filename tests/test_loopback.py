"""A local sweep's Ray listens on loopback only: the session's Ray is started the way `xtuner sweep run` starts a
private one (`xtuner.sweep.tune.init_ray` without RAY_ADDRESS); every listening socket of this process and of all
its children (GCS, raylet, agents, workers, the test's MLflow server) must be bound to a loopback address.
"""

from __future__ import annotations

import ipaddress
import os

import psutil
import ray


def listening(proc: psutil.Process) -> list[tuple[int, str, str, int]]:
    out = []
    for p in [proc, *proc.children(recursive=True)]:
        try:
            conns = p.net_connections(kind="inet")
            name = p.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out += [(p.pid, name, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return out


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def test_local_ray_and_servers_listen_only_on_loopback(ray_cluster: str, mlflow_server: str) -> None:
    @ray.remote
    def worker_pid() -> int:
        return os.getpid()

    assert ray.get(worker_pid.remote()) > 0  # at least one worker process is up and serving
    assert ray_cluster.startswith("127.0.0.1:")  # the GCS address the drivers join
    socks = listening(psutil.Process())
    names = {name for _, name, _, _ in socks}
    assert {"gcs_server", "raylet"} <= names, socks  # the sockets were found: the check below is not vacuous
    assert any(name.startswith("ray::") for name in names), socks  # workers/agents too
    exposed = [s for s in socks if not is_loopback(s[2])]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_driver_credentials_stay_out_of_ray_logs(ray_cluster: str, tmp_path, monkeypatch) -> None:
    """Tune copies AWS_* from the driver into each trial's runtime_env, which Ray's runtime_env agent logs in
    clear; a private local Ray (this session's, started by `init_ray`) does not need them there."""
    from pathlib import Path

    from ray import tune

    planted = "PlantedAwsSecret4Ray"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", planted)

    def trainable(config: dict) -> None:
        tune.report({"score": config["x"]})

    grid = tune.Tuner(trainable, param_space={"x": tune.grid_search([1, 2])},
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="cred")).fit()  # fmt: skip
    assert sorted(r.metrics["score"] for r in grid) == [1, 2]  # the trials ran, in new actors
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    agent_log = logs / "runtime_env_agent.log"
    assert agent_log.exists() and "env_vars" in agent_log.read_text()  # the agent logged the trials' runtime_env
    hits = [p.name for p in logs.rglob("*") if p.is_file() and planted.encode() in p.read_bytes()]
    assert not hits, hits
