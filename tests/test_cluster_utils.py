"""xtuner.cluster: redaction, safe paths, storage checks, job submission plumbing, GPU checks, GPU-hour estimates.

Real components throughout: real files and symlinks, pyarrow's real S3 filesystem (no credentials, no network), a
real closed TCP port for an unreachable cluster, and the session's real local Ray (conftest's `ray_cluster`).
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
from pathlib import Path

import pytest

from xtuner.cluster.estimate import (
    EVAL_SPEEDUP,
    THROUGHPUT,
    estimate_gpu_hours,
    estimate_lines,
    plan_nodes,
    throughput,
    trial_gpu_hours,
)
from xtuner.cluster.redact import is_secret_key, redact_params, redact_uri, safe_join, safe_join_uri
from xtuner.cluster.resources import Capacity, capacity_from_nodes, check_cluster_resources, gpu_shortfall
from xtuner.cluster.storage import check_storage
from xtuner.cluster.submit import build_job, dashboard_url, describe_job, forwarded_env, submit, withheld_env
from xtuner.errors import XtunerError

SECRET = "hunter2-s3cr3t"


def closed_port() -> int:
    """A local port nothing listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------------ redact
@pytest.mark.parametrize(
    "key",
    ["api_key", "apiKey", "HF_TOKEN", "hf_token", "MLFLOW_TRACKING_PASSWORD", "aws_secret_access_key",
     "clientSecret", "AuthToken", "db-password", "Secret", "private.key", "RAY_AUTH_TOKEN", "credentials"],
)  # fmt: skip
def test_secret_keys_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "psl",
        "lr",
        "tokenizer",
        "max_tokens",
        "keyboard",
        "monkey",
        "prefix_dropout",
        "task",
        "max_seq_length",
    ],
)
def test_ordinary_keys_are_not_secrets(key: str) -> None:
    assert not is_secret_key(key)


def test_redact_params_masks_nested_values_and_uri_passwords() -> None:
    params = {
        "lr": 0.01,
        "psl": 16,
        "tokenizer": "xlm-roberta-large",
        "hf_token": SECRET,
        "empty_password": "",
        "tracking": {"uri": f"postgresql://mlflow:{SECRET}@db.internal:5432/mlflow", "apiKey": SECRET},
        "hosts": [f"https://user:{SECRET}@example.org/x", "s3://bucket/sweeps"],
    }
    out = redact_params(params)
    assert SECRET not in repr(out)
    assert out["hf_token"] == "***" and out["tracking"]["apiKey"] == "***"
    assert out["lr"] == 0.01 and out["psl"] == 16 and out["tokenizer"] == "xlm-roberta-large"
    assert out["empty_password"] == ""  # "not set" stays visible
    assert out["tracking"]["uri"] == "postgresql://mlflow:***@db.internal:5432/mlflow"
    assert out["hosts"] == ["https://user:***@example.org/x", "s3://bucket/sweeps"]
    assert params["hf_token"] == SECRET  # the input is not modified
    assert redact_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"  # host:port is not user:password


# ------------------------------------------------------------------------------------------------ safe paths
def test_safe_join_keeps_paths_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    root.mkdir()
    assert safe_join(root, "paper/trial_0/ckpt") == (root / "paper" / "trial_0" / "ckpt").resolve()
    assert safe_join(root, "./a/./b") == (root / "a" / "b").resolve()
    for bad in ("../outside", "a/../../outside", "/etc/passwd", "", "a\x00b", "C:/Windows"):
        with pytest.raises(XtunerError, match="output path"):
            safe_join(root, bad)


def test_safe_join_refuses_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "storage", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(XtunerError, match="outside the storage root"):
        safe_join(root, "link/file.txt")


def test_a_sweep_cannot_write_outside_its_storage_root(tmp_path: Path) -> None:
    """The sweep folder goes through safe_join: a symlink named like the sweep that points elsewhere is refused
    before anything is written (and before --overwrite could delete what it points to)."""
    from xtuner.sweep.runner import load_plan, preflight

    storage, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    storage.mkdir()
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not the sweep's")
    (storage / "escape").symlink_to(elsewhere)
    spec = {"name": "escape", "model": "builtin:tiny-xlmr", "tasks": ["synth-xnli"], "methods": {"finetune": {"lr": [1e-4]}},
            "tracking": {"enabled": False}, "storage": str(storage)}  # fmt: skip
    for overwrite in (False, True):
        with pytest.raises(XtunerError, match="outside the storage root"):
            preflight(load_plan(spec), overwrite=overwrite)
    assert (elsewhere / "keep.txt").read_text() == "not the sweep's"
    assert sorted(p.name for p in storage.iterdir()) == ["escape"]
    spec["name"] = "inside"  # an ordinary name passes
    assert preflight(load_plan(spec))[0] == str(storage)


def test_safe_join_uri() -> None:
    assert safe_join_uri("s3://bucket/sweeps/", "paper/./trial_0") == "s3://bucket/sweeps/paper/trial_0"
    with pytest.raises(XtunerError):
        safe_join_uri("s3://bucket/sweeps", "../other-sweeps")
    with pytest.raises(XtunerError):
        safe_join_uri("s3://bucket/sweeps", "/abs")
    with pytest.raises(XtunerError, match="not a URI"):
        safe_join_uri("bucket/sweeps", "x")


# ------------------------------------------------------------------------------------------------ storage
def test_check_storage_local_creates_and_probes(tmp_path: Path) -> None:
    target = tmp_path / "results" / "nested"
    assert check_storage(str(target)) == str(target)
    assert target.is_dir() and list(target.iterdir()) == []  # the probe file is gone
    assert check_storage(f"file://{target}") == str(target)


def test_check_storage_local_unwritable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(XtunerError, match="cannot write") as e:
        check_storage(str(blocker / "sub"))
    assert str(blocker / "sub") in str(e.value)


@pytest.mark.parametrize(
    ("uri", "match"),
    [("", "empty"), ("ftp://host/x", "unsupported scheme"), ("hdfs://nn/x", "unsupported scheme"),
     ("s3://", "malformed"), ("s3:///sweeps", "malformed"), ("gs://", "malformed")],
)  # fmt: skip
def test_check_storage_rejects_malformed_uris(uri: str, match: str) -> None:
    with pytest.raises(XtunerError, match=match):
        check_storage(uri, timeout=1)


def test_check_storage_never_echoes_credentials_in_a_uri() -> None:
    with pytest.raises(XtunerError) as e:
        check_storage(f"s3://AKIAEXAMPLE:{SECRET}@bucket/x", timeout=1)
    assert SECRET not in str(e.value) and "credentials never go in the URI" in str(e.value)


@pytest.mark.timeout(60)
def test_check_storage_s3_without_credentials_fails_with_the_uri(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No AWS credentials (and offline here): an XtunerError naming the URI, bounded by the probe's deadline."""
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    uri = "s3://xtuner-test-no-such-bucket-7f3a/sweeps"
    with pytest.raises(XtunerError) as e:
        check_storage(uri, timeout=3)
    assert uri in str(e.value)
    assert "AWS_PROFILE" in str(e.value)  # says how to give credentials


# ------------------------------------------------------------------------------------------------ submit
def test_dashboard_url_normalises_and_refuses_wrong_ports() -> None:
    assert dashboard_url("127.0.0.1:8265") == "http://127.0.0.1:8265"
    assert dashboard_url("https://ray.example.org/") == "https://ray.example.org"
    for bad, match in [("ray://127.0.0.1:10001", "not ray://"), ("http://127.0.0.1:6379", "GCS port"),
                       ("", "empty"), ("http://:8265", "no host")]:  # fmt: skip
        with pytest.raises(XtunerError, match=match):
            dashboard_url(bad)


def test_forwarded_env_takes_xtuner_vars_and_never_a_secret() -> None:
    environ = {"MLFLOW_TRACKING_USERNAME": "ana", "MLFLOW_TRACKING_PASSWORD": SECRET, "MLFLOW_TRACKING_TOKEN": "",
               "XTUNER_CACHE": "/data/cache", "XTUNER_HF_TOKEN": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET,
               "HOME": "/home/ana", "RAY_AUTH_TOKEN": SECRET}  # fmt: skip
    # Ray writes a job's runtime_env (env_vars included) into runtime_env_agent.log: secrets stay behind, named
    assert forwarded_env(environ) == {"MLFLOW_TRACKING_USERNAME": "ana", "XTUNER_CACHE": "/data/cache"}
    assert withheld_env(environ) == ["MLFLOW_TRACKING_PASSWORD", "XTUNER_HF_TOKEN"]
    assert forwarded_env({"HOME": "/home/ana"}) == {} and withheld_env({"HOME": "/home/ana"}) == []


def make_checkout(tmp_path: Path) -> tuple[Path, Path]:
    wd = tmp_path / "checkout"
    (wd / "sweeps").mkdir(parents=True)
    spec = wd / "sweeps" / "my sweep.yaml"
    spec.write_text("name: x\n")
    return wd, spec


def test_build_job_entrypoint_and_runtime_env(tmp_path: Path) -> None:
    wd, spec = make_checkout(tmp_path)
    environ = {"MLFLOW_TRACKING_PASSWORD": SECRET, "XTUNER_DATA_SOURCE": "hub"}
    entrypoint, env = build_job(spec, working_dir=wd, environ=environ,
                                extra_args=["--storage", "s3://b/sweeps", "--set", "trial.max_seq_length=64"],
                                runtime_env={"env_vars": {"XTUNER_DATA_SOURCE": "xtreme"}, "excludes": ["data/"]})  # fmt: skip
    assert shlex.split(entrypoint) == ["python", "-m", "xtuner", "sweep", "run", "sweeps/my sweep.yaml",
                                       "--storage", "s3://b/sweeps", "--set", "trial.max_seq_length=64"]  # fmt: skip
    assert env["working_dir"] == str(wd.resolve())
    assert env["env_vars"] == {"XTUNER_DATA_SOURCE": "xtreme"}  # caller wins; the password is not forwarded
    assert {".venv", ".git", "xtuner_results", "data/"} <= set(env["excludes"])
    _, bare = build_job(spec, working_dir=wd, environ={})
    assert "env_vars" not in bare  # nothing set, nothing forwarded


def test_build_job_refuses_specs_the_cluster_cannot_see(tmp_path: Path) -> None:
    wd, _ = make_checkout(tmp_path)
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("name: x\n")
    with pytest.raises(XtunerError, match="outside the working directory"):
        build_job(outside, working_dir=wd, environ={})
    with pytest.raises(XtunerError, match="not found"):
        build_job(wd / "sweeps" / "missing.yaml", working_dir=wd, environ={})
    with pytest.raises(XtunerError, match="working directory"):
        build_job(outside, working_dir=tmp_path / "nope", environ={})


def test_describe_job_masks_forwarded_values(tmp_path: Path) -> None:
    wd, spec = make_checkout(tmp_path)
    entrypoint, env = build_job(spec, working_dir=wd, environ={"XTUNER_DATA_DIR": "/data/xtreme"},
                                extra_args=["--tracking-uri", f"http://ana:{SECRET}@mlflow:5000"])  # fmt: skip
    text = describe_job(entrypoint, env)
    assert SECRET not in text
    assert "XTUNER_DATA_DIR=***" in text and "sweeps/my sweep.yaml" in text


@pytest.mark.timeout(30)
def test_submit_to_an_unreachable_cluster_names_the_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wd, spec = make_checkout(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    monkeypatch.setenv("XTUNER_DATA_DIR", "/data/xtreme")
    address = f"http://127.0.0.1:{closed_port()}"
    with caplog.at_level(logging.INFO, logger="xtuner.cluster.submit"), pytest.raises(XtunerError) as e:
        submit(spec, address, working_dir=wd, timeout=2)
    message = str(e.value)
    assert address in message and "does not answer" in message and "ray dashboard cluster.yaml" in message
    assert SECRET not in message and SECRET not in caplog.text
    assert "XTUNER_DATA_DIR=***" in caplog.text  # the job was described, masked, before the probe
    assert "MLFLOW_TRACKING_PASSWORD" not in caplog.text  # not forwarded at all


# ------------------------------------------------------------------------------------------------ resources
def test_gpu_shortfall_rules() -> None:
    cpu_only = Capacity(total_gpu=0, total_cpu=16, node_gpu=0, node_cpu=16)
    assert gpu_shortfall(0.5, cpu_only) == "needs 0.5 GPU per trial, cluster has 0 GPUs"
    assert gpu_shortfall(0, cpu_only, cpu_per_trial=4) is None
    two_small = Capacity(total_gpu=2, total_cpu=16, node_gpu=1, node_cpu=8)
    assert gpu_shortfall(1, two_small, cpu_per_trial=4) is None
    assert gpu_shortfall(2, two_small) == "needs 2 GPU per trial, cluster has 2 GPUs (at most 1 on one node)"
    assert "largest such node has 8 CPUs" in gpu_shortfall(1, two_small, cpu_per_trial=12)
    autoscaling = Capacity(
        total_gpu=0, total_cpu=8, node_gpu=0, node_cpu=8, launchable_gpu=8, launchable_cpu=96
    )
    assert gpu_shortfall(1, autoscaling, cpu_per_trial=4) is None  # the autoscaler can add a GPU node
    assert "can add nodes with at most 8" in gpu_shortfall(16, autoscaling)


def test_capacity_from_nodes_ignores_dead_nodes_and_reads_node_types() -> None:
    nodes = [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
             {"Alive": True, "Resources": {"CPU": 4.0}},
             {"Alive": False, "Resources": {"CPU": 96.0, "GPU": 8.0}}]  # fmt: skip
    cap = capacity_from_nodes(nodes, {"gpu-a100x8": {"CPU": 96, "GPU": 8}, "cpu": {"CPU": 4}})
    assert (cap.total_gpu, cap.total_cpu, cap.node_gpu, cap.node_cpu) == (1, 12, 1, 8)
    assert (cap.launchable_gpu, cap.launchable_cpu) == (8, 96)


def test_check_cluster_resources_on_a_real_ray(ray_cluster: str) -> None:
    import ray

    have = ray.cluster_resources()
    gpus, cpus = have.get("GPU", 0.0), have.get("CPU", 0.0)
    cap = check_cluster_resources(0, required_cpu_per_trial=1, bootstrap_config=None)
    assert (cap.total_gpu, cap.total_cpu) == (gpus, cpus)
    with pytest.raises(XtunerError) as e:
        check_cluster_resources(gpus + 0.5, bootstrap_config=None)
    assert f"needs {gpus + 0.5:g} GPU per trial, cluster has {gpus:g} GPUs" in str(e.value)
    with pytest.raises(XtunerError, match="CPU per trial"):
        check_cluster_resources(0, required_cpu_per_trial=cpus + 1, bootstrap_config=None)


# ------------------------------------------------------------------------------------------------ estimate
def test_throughput_scales_with_sequence_length_and_gpu() -> None:
    base = throughput("FacebookAI/xlm-roberta-large", "finetune")
    assert base == THROUGHPUT[("xlm-roberta-large", "finetune")]
    assert throughput("xlm-roberta-large", "finetune", max_seq_length=256) == pytest.approx(base / 2)
    assert throughput("xlm-roberta-large", "finetune", gpu_type="A100") == pytest.approx(base * 0.45)
    assert throughput("xlm-roberta-large", "finetune", gpu_type="H100") < base  # the table is the H200's
    assert throughput("xlm-roberta-large", "deep_prompt") > base  # frozen backbone: no weight gradients
    with pytest.raises(XtunerError, match="xlm-roberta-large/finetune"):
        throughput("bert-base-cased", "finetune")
    with pytest.raises(XtunerError, match="GPU type"):
        throughput("xlm-roberta-large", "finetune", gpu_type="TPUv9")


def test_trial_gpu_hours_by_hand() -> None:
    table = {("m", "x"): 10.0}
    trial = {"model": "m", "method": "x", "task": "custom", "epochs": 2, "train_examples": 1000,
             "dev_examples": 100, "test_examples": 300, "max_seq_length": 128, "gpu": 0.5}  # fmt: skip
    # 2 epochs x 1000 / 10 per s + (2 x 100 + 300) / (10 x 3) per s = 216.67 s
    assert EVAL_SPEEDUP == 3.0
    assert trial_gpu_hours(trial, table=table) == pytest.approx((200 + 500 / 30) / 3600)
    capped = {**trial, "max_train_examples": 100}
    assert trial_gpu_hours(capped, table=table) == pytest.approx((20 + 500 / 30) / 3600)
    assert trial_gpu_hours({**trial, "gpu": 0}, table=table) == 0.0
    # a known XTREME task: sizes from the table, test over the chosen languages
    xnli = {
        "model": "xlm-roberta-large",
        "method": "finetune",
        "task": "xnli",
        "epochs": 1,
        "languages": ["en", "de"],
    }
    tput = THROUGHPUT[("xlm-roberta-large", "finetune")]
    assert trial_gpu_hours(xnli) == pytest.approx((392_702 / tput + (2_490 + 2 * 5_010) / (tput * 3)) / 3600)


def test_plan_nodes_packs_half_gpu_trials_two_per_gpu() -> None:
    table = {("m", "x"): 1.0}
    # each trial: 3600 examples / 1 per s = 1 GPU-hour (no eval)
    trial = {"model": "m", "method": "x", "task": "t", "epochs": 1, "train_examples": 3600, "dev_examples": 0,
             "test_examples": 0, "gpu": 0.5, "cpu": 4}  # fmt: skip
    worker = {"name": "w", "gpu_type": "H200", "gpus": 1, "cpus": 8, "max_workers": 4}  # the reference GPU
    plan = plan_nodes([trial] * 4, worker, table=table)
    assert (plan.nodes, plan.nodes_for_all, plan.concurrent_trials) == (2, 2, 4)
    assert plan.gpu_hours == pytest.approx(4.0)
    assert plan.wall_hours == pytest.approx(2.0)  # two trials share a GPU and each runs at half speed
    one = plan_nodes([trial] * 4, worker, max_workers=1, table=table)
    assert (one.nodes, one.concurrent_trials, one.wall_hours) == (1, 2, pytest.approx(4.0))
    cpu_bound = plan_nodes([{**trial, "cpu": 8}] * 4, worker, table=table)  # 8 CPUs: one trial per node
    assert (cpu_bound.nodes_for_all, cpu_bound.nodes) == (4, 4)
    whole = plan_nodes([{**trial, "gpu": 1}] * 3, {**worker, "gpus": 2, "cpus": 16}, table=table)
    assert (whole.nodes_for_all, whole.wall_hours) == (2, pytest.approx(1.0))
    with pytest.raises(XtunerError, match="needs 2 GPU"):
        plan_nodes([{**trial, "gpu": 2}], worker, table=table)


def test_estimate_lists_unknown_models_instead_of_failing() -> None:
    trials = [
        {
            "model": "xlm-roberta-base",
            "method": "deep_prompt",
            "task": "pawsx",
            "epochs": 30,
            "gpu": 0.5,
            "cpu": 4,
        },
        {"model": "xlm-roberta-base", "method": "finetune", "task": "pawsx", "epochs": 2, "gpu": 1, "cpu": 4},
        {"model": "builtin:tiny-xlmr", "method": "finetune", "task": "synth-xnli", "epochs": 2, "gpu": 1},
        {"model": "builtin:tiny-xlmr", "method": "finetune", "task": "synth-xnli", "epochs": 2, "gpu": 0},
    ]
    est = estimate_gpu_hours(trials)
    assert set(est.by_group) == {"pawsx/deep_prompt/xlm-roberta-base", "pawsx/finetune/xlm-roberta-base"}
    assert est.total_hours == pytest.approx(trial_gpu_hours(trials[0]) + trial_gpu_hours(trials[1]))
    assert len(est.unknown) == 1 and "builtin:tiny-xlmr" in est.unknown[0] and est.cpu_only == 1
    lines = estimate_lines(trials)
    assert lines[0].startswith("GPU-hours (rough, H200-equivalent")
    assert any(line.startswith("node plan gpu-a100x8: 1 x 8 A100") for line in lines)
    assert any("not estimated" in line for line in lines)


def test_check_cluster_resources_counts_what_the_autoscaler_can_add(ray_cluster: str, tmp_path: Path) -> None:
    """On a `ray up` head the GPU workers may not exist yet: their types in ~/ray_bootstrap_config.yaml count."""
    import ray
    import yaml

    gpus = ray.cluster_resources().get("GPU", 0.0)
    bootstrap = tmp_path / "ray_bootstrap_config.yaml"
    bootstrap.write_text(yaml.safe_dump({
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0}, "max_workers": 0},
            "gpu-big": {"resources": {"CPU": 96, "GPU": gpus + 8}, "max_workers": 2},
            "gpu-off": {"resources": {"CPU": 8, "GPU": gpus + 64}, "max_workers": 0},
        },
    }))  # fmt: skip
    cap = check_cluster_resources(gpus + 0.5, required_cpu_per_trial=4, bootstrap_config=bootstrap)
    assert (cap.launchable_gpu, cap.launchable_cpu) == (gpus + 8, 96)
    with pytest.raises(XtunerError, match=f"can add nodes with at most {gpus + 8:g}"):
        check_cluster_resources(gpus + 16, bootstrap_config=bootstrap)  # gpu-off has max_workers 0
    with pytest.raises(XtunerError, match=f"needs {gpus + 0.5:g} GPU per trial"):
        check_cluster_resources(gpus + 0.5, bootstrap_config=tmp_path / "missing.yaml")
