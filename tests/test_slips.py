"""Small slips of the command line (issue 15, Why 10), as a user meets them: a `--set` typo is blamed on the --set
argument (not on a line of the spec); `--dry-run` on a sweep name already in use fails as the real run does; `trial
--help` states each method's own default learning rate, which is the one used; `trial --set` has a did-you-mean;
`sweep submit` takes the cluster from RAY_ADDRESS like `ray job submit`."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from xtuner.cli import main
from xtuner.errors import XtunerError
from xtuner.sweep.spec import load_spec
from xtuner.sweep.state import STATE_FILE, SweepState

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "sweeps" / "demo.yaml"


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("schedular.type", "none", "--set schedular.type: schedular: unknown key 'schedular' (did you mean "
                                   "'scheduler'?)"),
        ("scheduler.grace_period", "-1", "--set scheduler.grace_period: Input should be greater than 0"),
        ("trial.max_train_exampels", "3", "--set trial.max_train_exampels: unknown trial setting "
                                          "'max_train_exampels' (did you mean 'max_train_examples'?)"),
        ("methods.deep_prompt.pls", "[4]", "--set methods.deep_prompt.pls: unknown setting 'pls' for method "
                                           "'deep_prompt' (did you mean 'psl'?)"),
    ],
)  # fmt: skip
def test_a_set_typo_is_blamed_on_the_set_argument(capsys, key: str, value: str, message: str) -> None:
    rc, _, err = cli(capsys, "sweep", "run", str(DEMO), "--dry-run", "--set", f"{key}={value}")
    line = one_error(err)
    assert rc == 2 and line.startswith(f"error: {message}") and "line " not in line and "demo.yaml" not in line


def test_a_spec_typo_still_names_its_line(tmp_path: Path) -> None:
    text = DEMO.read_text().replace("scheduler: {type: asha", "scheduler: {typ: asha")
    (tmp_path / "typo.yaml").write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("scheduler:"))
    with pytest.raises(XtunerError, match=rf"typo.yaml: line {line}: scheduler.typ: unknown key 'typ'"):
        load_spec(tmp_path / "typo.yaml", {"trial.max_train_examples": 10})


def test_dry_run_on_a_name_in_use_fails_like_the_real_run(capsys, tmp_path: Path, tiny_model: str) -> None:
    raw = yaml.safe_load(DEMO.read_text()) | {"model": tiny_model, "storage": str(tmp_path / "results"),
                                              "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}  # fmt: skip
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(raw))
    assert cli(capsys, "sweep", "run", str(tmp_path / "demo.yaml"), "--dry-run")[0] == 0  # a free name
    SweepState("demo", raw).save(tmp_path / "results" / "demo" / STATE_FILE)  # an earlier sweep of that name
    rc_dry, out, err_dry = cli(capsys, "sweep", "run", str(tmp_path / "demo.yaml"), "--dry-run")
    assert "trials: 16" in out  # the plan is still shown
    rc_real, _, err_real = cli(capsys, "sweep", "run", str(tmp_path / "demo.yaml"))  # refused before Ray starts
    assert rc_dry == rc_real == 2 and one_error(err_dry) == one_error(err_real)
    assert "already exists" in err_dry and "--overwrite" in err_dry
    assert cli(capsys, "sweep", "run", str(tmp_path / "demo.yaml"), "--dry-run", "--overwrite")[0] == 0
    assert (tmp_path / "results" / "demo" / STATE_FILE).is_file()  # a dry run deletes nothing


def test_trial_help_states_the_default_lr_each_method_uses(capsys, tmp_path: Path, tiny_model: str) -> None:
    from xtuner.methods import get_method, method_names

    with pytest.raises(SystemExit):
        main(["trial", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in method_names():
        assert f"{name} {get_method(name).default_lr:g}" in text
    blocker = tmp_path / "cache-is-a-file"  # stops the trial right after it printed its settings
    blocker.write_text("x")
    for name, psl in (("lora", []), ("soft_prompt", ["--psl", "4"])):
        rc, _, err = cli(capsys, "trial", "--task", "synth-xnli", "--model", tiny_model, "--method", name, *psl,
                         "--set", f"cache_dir={blocker}")  # fmt: skip
        assert rc == 2 and f"  lr {get_method(name).default_lr}, seed 1" in err.splitlines()


@pytest.mark.parametrize(
    "method,key,message",
    [
        ("finetune", "warmup_rato", "--set warmup_rato: unknown trial setting (did you mean 'warmup_ratio'?)"),
        ("lora", "rr", "--set rr: unknown trial setting (did you mean 'r'?); settings of 'lora': alpha, dropout"),
    ],
)
def test_trial_set_has_a_did_you_mean(capsys, method: str, key: str, message: str) -> None:
    rc, _, err = cli(capsys, "trial", "--task", "synth-xnli", "--method", method, "--set", f"{key}=1")
    assert rc == 2 and one_error(err).startswith(f"error: {message}")


def test_submit_takes_the_cluster_from_ray_address(capsys, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "s.yaml").write_text("name: s\nmodel: builtin:tiny-xlmr\ntasks: [synth-xnli]\n"
                                     "methods: {finetune: {lr: [1.0e-4]}}\n")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    rc, _, err = cli(capsys, "sweep", "submit", "s.yaml")
    assert rc == 2 and "no cluster address: pass --address" in one_error(err) and "RAY_ADDRESS" in err
    with socket.socket() as s:  # a local port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"http://127.0.0.1:{port}")
    rc, _, err = cli(capsys, "sweep", "submit", "s.yaml")
    assert rc == 2 and f"Ray cluster at http://127.0.0.1:{port} does not answer" in one_error(err)


def test_a_sweep_state_is_running_stopped_or_finished(capsys, tmp_path: Path) -> None:
    """What `sweep status` (table and --json) and `sweep list` call a sweep: running while a driver holds its lock,
    stopped when it ended early, finished."""
    import json

    from xtuner.sweep.lock import DriverLock

    storage = tmp_path / "results"
    for name, finished in (("a", False), ("b", True)):
        state = SweepState(name, {"name": name})
        state.finished = finished
        state.save(storage / name / STATE_FILE)

    def states() -> dict[str, str]:
        assert main(["sweep", "list", "--storage", str(storage), "--json"]) == 0
        return {s["sweep"]: s["state"] for s in json.loads(capsys.readouterr().out)}

    assert states() == {"a": "stopped", "b": "finished"}
    rc, out, _ = cli(capsys, "sweep", "status", "a", "--storage", str(storage))
    assert rc == 0 and f"sweep a: stopped; continue with: xtuner sweep resume {storage / 'a'}" in out
    with DriverLock(str(storage / "a"), "sweep run"):  # a driver is at work on it
        assert states() == {"a": "running", "b": "finished"}
        rc, out, _ = cli(capsys, "sweep", "status", "a", "--storage", str(storage), "--json")
        assert rc == 0 and json.loads(out)["state"] == "running"
    assert states()["a"] == "stopped"
