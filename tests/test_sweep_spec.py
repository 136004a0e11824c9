"""The sweep spec and plan, without Ray: a battery of malformed specs (each rejected with a message naming the
field), the expansion (per-method params, per-task overrides, grid/random/optuna shapes), the pre-flight checks
(unreachable tracking URI, unwritable storage: clear error, nothing started), and the shipped sweep files through
the real CLI in a subprocess that also proves Ray was never imported.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from xtuner.errors import XtunerError
from xtuner.sweep.checks import check_tracking
from xtuner.sweep.report import print_plan
from xtuner.sweep.runner import preflight
from xtuner.sweep.space import build_plan
from xtuner.sweep.spec import load_spec
from xtuner.sweep.tracking import per_language_csv, redact

ROOT = Path(__file__).resolve().parents[1]


def base(model: str) -> dict:
    return {
        "name": "t",
        "model": model,
        "tasks": ["synth-xnli", "synth-udpos"],
        "methods": {"finetune": {"lr": [1.0e-4, 3.0e-4]}, "deep_prompt": {"lr": [1.0e-2], "psl": [4, 8]}},
        "epochs": 2,
        "scheduler": {"type": "asha", "grace_period": 1},
        "trial": {"max_train_examples": 64, "languages": ["en", "s3"]},
    }


def plan_of(raw: dict, overrides: dict | None = None):
    return build_plan(load_spec(raw, overrides))


def _set(path: str, value):
    def mutate(d: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d.setdefault(p, {})
        d[last] = value

    return mutate


def _drop(path: str):
    def mutate(d: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        del d[last]

    return mutate


# (id, mutation of the base spec, substrings the message must contain)
BAD = [
    ("unknown-top-key", _set("schedular", {}), ["schedular", "did you mean 'scheduler'"]),
    ("bad-name", _set("name", "my sweep"), ["name"]),
    ("unknown-task", _set("tasks", ["synth-xnl"]), ["tasks.synth-xnl", "did you mean 'synth-xnli'"]),
    ("no-tasks", _set("tasks", []), ["tasks"]),
    ("task-listed-twice", _set("tasks", ["synth-xnli", "synth-xnli"]), ["tasks", "twice"]),
    ("unknown-method", _set("methods.fine_tune", {"lr": 1e-3}), ["methods.fine_tune", "did you mean 'finetune'"]),
    ("no-methods", _set("methods", {}), ["methods"]),
    ("psl-for-finetune", _set("methods.finetune.psl", [16]), ["methods.finetune.psl", "unknown setting 'psl'"]),
    ("negative-lr", _set("methods.finetune.lr", -1e-3), ["methods.finetune.lr", "greater than 0"]),
    ("zero-lr-in-grid", _set("methods.finetune.lr", [1e-3, 0.0]), ["methods.finetune.lr", "greater than 0"]),
    ("empty-grid", _set("methods.finetune.lr", []), ["methods.finetune.lr", "empty list"]),
    ("psl-zero", _set("methods.deep_prompt.psl", [0, 8]), ["methods.deep_prompt.psl", "psl"]),
    ("no-lr", _set("methods.finetune", {"batch_size": 8}), ["methods.finetune", "learning rate"]),
    ("num-samples-zero", _set("num_samples", 0), ["num_samples"]),
    ("grid-num-samples", _set("num_samples", 3), ["num_samples", "seeds"]),
    ("optuna-one-sample", _set("search", "optuna"), ["num_samples", ">= 2"]),
    ("grid-distribution", _set("methods.finetune.lr", {"loguniform": [1e-5, 1e-3]}), ["methods.finetune.lr", "random or optuna"]),
    ("loguniform-low-zero", _set("methods.finetune.lr", {"loguniform": [0.0, 1e-3]}), ["methods.finetune.lr.loguniform"]),
    ("uniform-reversed", _set("methods.finetune.lr", {"uniform": [1e-3, 1e-5]}), ["methods.finetune.lr.uniform", "low < high"]),
    ("unknown-distribution", _set("methods.finetune.lr", {"normal": [0, 1]}), ["methods.finetune.lr", "loguniform"]),
    ("scheduler-type", _set("scheduler.type", "hyperband"), ["scheduler.type"]),
    ("grace-not-below-epochs", _set("scheduler.grace_period", 2), ["scheduler.grace_period", "epochs"]),
    ("reduction-factor-one", _set("scheduler.reduction_factor", 1), ["scheduler.reduction_factor"]),
    ("scheduler-unknown-key", _set("scheduler.grace", 1), ["scheduler.grace", "did you mean 'grace_period'"]),
    ("gpu-fraction-above-one", _set("resources.gpu", 1.5), ["resources.gpu"]),
    ("resources-unknown-method", _set("resources.methods", {"lora": {"gpu": 1}}), ["resources.methods.lora"]),
    ("cpu-zero", _set("resources.cpu", 0), ["resources.cpu"]),
    ("trial-typo", _set("trial.batchsize", 8), ["trial.batchsize", "did you mean 'batch_size'"]),
    ("trial-method-setting", _set("trial.psl", 16), ["trial.psl", "methods.<method>"]),
    ("trial-reserved", _set("trial.task", "synth-xnli"), ["trial.task", "tasks:"]),
    ("unknown-language", _set("trial.languages", ["en", "de"]), ["trial.languages", "unknown language 'de'"]),
    ("task-override-language", _set("tasks", {"synth-xnli": {"trial": {"languages": ["xx"]}}}),
     ["tasks.synth-xnli.trial.languages"]),
    ("task-override-method", _set("tasks", {"synth-xnli": {"methods": {"lora": {"lr": 1e-3}}}}),
     ["tasks.synth-xnli.methods.lora"]),
    ("model-and-models", _set("models", ["builtin:tiny-xlmr"]), ["exactly one of model"]),
    ("seed-twice", _set("seeds", [1, 1]), ["seeds"]),
    ("max-concurrent-zero", _set("max_concurrent", 0), ["max_concurrent"]),
    ("negative-epochs", _set("epochs", -1), ["epochs"]),
    ("epochs-twice", _set("trial.epochs", 3), ["epochs", "not both"]),
    ("tracking-typo", _set("tracking.url", "x"), ["tracking.url", "did you mean 'uri'"]),
    ("unknown-builtin-model", _set("model", "builtin:huge"), ["model", "builtin:tiny-xlmr"]),
    ("missing-data-dir", _set("data_dir", "/nonexistent/xtreme"), ["data_dir", "not a directory"]),
    ("optuna-nothing-to-search", lambda d: d.update(search="optuna", num_samples=2, methods={"finetune": {"lr": 1e-3}}),
     ["methods.finetune", "nothing to search"]),
    ("keep-zero-checkpoints", _set("checkpoints.num_to_keep", 0), ["checkpoints.num_to_keep"]),
    ("output-dir", _set("trial.output_dir", "/tmp/x"), ["trial.output_dir"]),
    ("seed-in-method", _set("methods.finetune.seed", [1, 2]), ["methods.finetune.seed", "seeds:"]),
    ("batch-size-type", _set("methods.finetune.batch_size", "big"), ["methods.finetune.batch_size", "integer"]),
    ("short-max-length", _set("trial.max_seq_length", 4), ["trial.max_seq_length", "16"]),
    ("no-name", _drop("name"), ["name", "required"]),
]  # fmt: skip


@pytest.mark.parametrize("mutate,needles", [pytest.param(m, n, id=i) for i, m, n in BAD])
def test_malformed_spec_is_rejected_naming_the_field(tiny_model: str, mutate, needles: list[str]) -> None:
    raw = copy.deepcopy(base(tiny_model))
    mutate(raw)
    with pytest.raises(XtunerError) as err:
        plan_of(raw)
    message = str(err.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in: {message}"


def test_battery_is_large_enough() -> None:
    assert len(BAD) >= 25


def test_error_names_the_yaml_line(tmp_path: Path, tiny_model: str) -> None:
    raw = base(tiny_model)
    raw["scheduler"]["grace_period"] = -1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(XtunerError) as err:
        load_spec(path)
    lines = path.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "grace_period" in text)
    assert f"bad.yaml: line {line}: scheduler.grace_period" in str(err.value)


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: [unclosed\n")
    (tmp_path / "b.yaml").write_text("- a\n- b\n")
    with pytest.raises(XtunerError, match="not valid YAML"):
        load_spec(tmp_path / "a.yaml")
    with pytest.raises(XtunerError, match="mapping"):
        load_spec(tmp_path / "b.yaml")


def test_grid_method_params_do_not_multiply_other_methods(tiny_model: str) -> None:
    plan = plan_of(base(tiny_model))
    # 2 tasks x (finetune 2 lr + deep_prompt 1 lr x 2 psl) = 8, not 2 x 2 x 2 x 2
    assert plan.n_trials == 8
    flats = [plan.groups[k].flat(p) for k, p in plan.grid]
    assert all("psl" not in f for f in flats if f["method"] == "finetune")
    assert sorted(f["psl"] for f in flats if f["method"] == "deep_prompt" and f["task"] == "synth-xnli") == [
        4,
        8,
    ]
    assert all(
        f["epochs"] == 2 and f["max_train_examples"] == 64 and f["languages"] == ["en", "s3"] for f in flats
    )
    # grid trials carry their group and values; to_flat gives back the flat run_trial config
    key, params = plan.grid[0]
    assert plan.to_flat({"point": {"group": key, "params": params}}) == flats[0]


def test_precedence_trial_task_method_task_method(tiny_model: str) -> None:
    raw = base(tiny_model)
    raw["trial"]["batch_size"] = 8
    raw["methods"]["deep_prompt"]["batch_size"] = 16
    raw["tasks"] = {
        "synth-xnli": {"trial": {"max_seq_length": 48, "batch_size": 4},
                       "methods": {"deep_prompt": {"lr": 5.0e-3, "psl": 32}}},
        "synth-udpos": None,
    }  # fmt: skip
    plan = plan_of(raw)
    by = {(g.task, g.method): g for g in plan.groups.values()}
    assert by["synth-xnli", "finetune"].fixed["batch_size"] == 4  # task trial beats top-level trial
    assert by["synth-xnli", "deep_prompt"].fixed["batch_size"] == 16  # method block beats task trial
    assert (
        by["synth-xnli", "deep_prompt"].fixed["psl"] == 32
        and "psl" not in by["synth-xnli", "deep_prompt"].axes
    )
    assert by["synth-xnli", "deep_prompt"].fixed["lr"] == 5.0e-3
    assert by["synth-udpos", "deep_prompt"].axes["psl"] == [4, 8]  # the other task keeps the method's grid
    assert by["synth-xnli", "finetune"].fixed["max_seq_length"] == 48
    assert "max_seq_length" not in by["synth-udpos", "finetune"].fixed
    assert plan.n_trials == 2 + 1 + 2 + 2


def test_random_and_optuna_plans(tiny_model: str) -> None:
    raw = base(tiny_model) | {"search": "random", "num_samples": 3}
    raw["methods"]["finetune"]["lr"] = {"loguniform": [1e-5, 1e-3]}
    plan = plan_of(raw)
    assert plan.n_trials == 4 * 3  # groups (2 tasks x 2 methods) x num_samples
    g = next(g for g in plan.groups.values() if g.method == "finetune")
    assert str(g.dists["lr"]) == "loguniform(1e-05, 0.001)"
    flat = plan.to_flat({"group": g.key, "sampled": {g.key: {"lr": 2e-4}}})
    assert flat["lr"] == 2e-4 and flat["method"] == "finetune"
    assert plan.to_flat({"group": g.key, "params": {"lr": 3e-4}})["lr"] == 3e-4
    console = Console(record=True, width=250)
    print_plan(plan_of(raw, {"methods.deep_prompt.lr_schedule": "exponential"}), console)
    rows = [r for r in console.export_text().splitlines() if "synth-xnli" in r]
    # beside the search space, the settings a group's trials share, the schedule and dev split always (defaults)
    ft = next(r for r in rows if "finetune" in r)
    assert "lr=loguniform(1e-05, 0.001)" in ft and "dev_split=validation" in ft and "lr_schedule=linear" in ft
    dp = next(r for r in rows if "deep_prompt" in r)
    assert "psl=[4, 8]" in dp and "lr_gamma=0.95 lr_schedule=exponential" in dp and "lr=[0.01]" in dp
    with pytest.raises(XtunerError, match="randint needs integer ends"):
        plan_of(raw, {"methods.deep_prompt.psl": {"randint": [4.5, 8]}})


def test_set_overrides_dotted_paths(tiny_model: str) -> None:
    plan = plan_of(base(tiny_model), {"scheduler.type": "none", "trial.max_train_examples": 32,
                                      "methods.finetune.lr": [1e-4], "tasks.synth-xnli.trial.max_seq_length": 32})  # fmt: skip
    assert plan.spec.scheduler.type == "none"
    assert plan.n_trials == 2 * (1 + 2)
    assert all(g.fixed["max_train_examples"] == 32 for g in plan.groups.values())
    assert {g.task: g.fixed.get("max_seq_length") for g in plan.groups.values()} == {
        "synth-xnli": 32,
        "synth-udpos": None,
    }


def test_unreachable_tracking_uri_and_unwritable_storage_start_nothing(
    tmp_path: Path, tiny_model: str
) -> None:
    from conftest import free_port

    storage = tmp_path / "results"
    plan = plan_of(
        base(tiny_model), {"tracking.uri": f"http://127.0.0.1:{free_port()}", "storage": str(storage)}
    )
    with pytest.raises(XtunerError, match="does not answer"):
        preflight(plan)
    assert not (storage / "t").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    plan = plan_of(base(tiny_model), {"storage": str(blocker / "results")})
    with pytest.raises(XtunerError, match="cannot write"):
        preflight(plan)
    with pytest.raises(XtunerError, match="does not exist"):
        check_tracking(f"sqlite:///{tmp_path}/missing-dir/mlflow.db")


def test_redaction_and_per_language_csv() -> None:
    red = redact({"hub_token": "abc", "db_password": "p", "lr": 0.001, "languages": ["en", "s3"],
                  "uri": "http://user:pw@host:5000/x", "api_key": "k"})  # fmt: skip
    assert red == {"hub_token": "***", "db_password": "***", "lr": "0.001", "languages": '["en", "s3"]',
                   "uri": "http://user:***@host:5000/x", "api_key": "***"}  # fmt: skip
    table = per_language_csv({"test/s3/f1": 40.0, "test/en/f1": 50.0, "test/avg/f1": 45.0, "test/gap/f1": 10.0,
                              "test/en/precision": 51.0, "dev/en/f1": 55.0})  # fmt: skip
    assert table.splitlines() == ["lang,f1,precision", "en,50.0000,51.0000", "s3,40.0000,", "avg,45.0000,",
                                  "gap,10.0000,"]  # fmt: skip


CLI_SCRIPT = r"""
import contextlib, io, json, sys
from xtuner.cli import main
out = {}
for name, argv in json.loads(sys.argv[1]).items():
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        rc = main(argv)
    out[name] = {"rc": rc, "stdout": o.getvalue(), "stderr": e.getvalue()}
out["ray_imported"] = "ray" in sys.modules
print(json.dumps(out))
"""


def test_cli_dry_runs_and_bad_input_never_import_ray(tmp_path: Path, tiny_model: str) -> None:
    from conftest import free_port

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(base(tiny_model) | {"methods": {"finetune": {"lr": 1e-3, "psl": 16}}}))
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(base(tiny_model)))
    blocker = tmp_path / "file"
    blocker.write_text("")
    runs = {
        "demo": ["sweep", "run", str(ROOT / "sweeps" / "demo.yaml"), "--dry-run", "--set", f"model={tiny_model}"],
        "paper": ["sweep", "run", str(ROOT / "sweeps" / "paper.yaml"), "--dry-run"],
        "bad": ["sweep", "run", str(bad)],
        "tracking": ["sweep", "run", str(good), "--tracking-uri", f"http://127.0.0.1:{free_port()}",
                     "--storage", str(tmp_path / "s1")],
        "storage": ["sweep", "run", str(good), "--storage", str(blocker / "sub")],
        "status-missing": ["sweep", "status", "nope", "--storage", str(tmp_path)],
    }  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", CLI_SCRIPT, json.dumps(runs)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ray_imported"] is False
    demo = out["demo"]
    assert demo["rc"] == 0 and "trials: 16" in demo["stdout"]
    assert (
        demo["stdout"].count("synth-") >= 16
        and "deep_prompt: 1 CPU, 0 GPU per trial (10 trials)" in demo["stdout"]
    )
    paper = out["paper"]
    assert paper["rc"] == 0 and "trials: 60" in paper["stdout"]
    for arm in ("deep_prompt: 4 CPU, 0.5 GPU per trial (12 trials)", "finetune-mpt: 4 CPU, 1 GPU per trial (36",
                "finetune-xtreme: 4 CPU, 1 GPU per trial (12 trials)"):  # fmt: skip
        assert arm in paper["stdout"]
    assert "GPU-hours" in paper["stdout"] and "GPU-hours" not in demo["stdout"]  # xtuner.cluster.estimate
    for name, needle in [("bad", "methods.finetune.psl"), ("tracking", "does not answer"),
                         ("storage", "cannot write"), ("status-missing", "no sweep 'nope'")]:  # fmt: skip
        assert out[name]["rc"] == 2, name
        assert needle in out[name]["stderr"] and "Traceback" not in out[name]["stderr"], out[name]["stderr"]
    assert not (tmp_path / "s1" / "t").exists()


def test_sweep_files_open_with_their_command() -> None:
    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# xtuner sweep run sweeps/"), (path, first)


def test_tracking_checks_send_mlflows_credentials(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracking server behind a gateway that wants MLflow's bearer token (MLFLOW_TRACKING_TOKEN), in front of the
    session's real `mlflow server`: the pre-flight checks send what MLflow's client sends, so a token the user set
    passes; without it, `sweep run`'s check says the answer is not MLflow's, while report/analyze's only needs an
    answer and lets MLflow's client judge it."""
    import http.server
    import threading
    import urllib.request

    from conftest import free_port

    from xtuner.sweep.checks import check_server, check_tracking

    class Gateway(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.headers.get("Authorization") != "Bearer gw-token-123":
                self.send_response(401)
                self.end_headers()
                return
            with urllib.request.urlopen(mlflow_server + self.path, timeout=10) as up:  # noqa: S310
                body, status = up.read(), up.status
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
        with pytest.raises(XtunerError, match=r"answers but is not an MLflow server: /health: HTTP 401"):
            check_tracking(uri)
        check_server(uri)  # an answer: report/analyze go on and MLflow's client reports the 401 itself
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "gw-token-123")
        check_tracking(uri)
        check_server(uri)
    finally:
        server.shutdown()
