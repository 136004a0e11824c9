"""The CLI as a user runs it: tasks, data inspect/prepare, model prepare, trial; errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xtuner.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_tasks_json_lists_every_task_with_languages_and_heads(capsys):
    rc, out, _ = run_cli(capsys, "tasks", "--json")
    assert rc == 0
    tasks = {t["name"]: t for t in json.loads(out)}
    assert tasks["synth-xnli"]["head"] == "sequence_classification"
    assert tasks["synth-udpos"]["head"] == "token_classification"
    assert tasks["synth-xquad"]["head"] == "extractive_qa"
    assert len(tasks["xnli"]["languages"]) == 15 and len(tasks["udpos"]["languages"]) == 33
    assert tasks["synth-xnli"]["labels"] == ["entailment", "neutral", "contradiction"]


def test_tasks_table(capsys):
    rc, out, _ = run_cli(capsys, "tasks")
    assert rc == 0 and "synth-pawsx" in out and "tydiqa" in out


def test_data_inspect_json(capsys):
    rc, out, _ = run_cli(capsys, "data", "inspect", "synth-xnli", "--lang", "s6", "--split", "test", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["count"] == 500
    assert set(data["example"]) >= {"premise", "hypothesis", "label"}
    assert data["example"]["label_name"] in ("entailment", "neutral", "contradiction")


def test_data_inspect_real_task_from_the_xtreme_layout(capsys):
    fixtures = ROOT / "tests" / "fixtures" / "xtreme" / "download"
    rc, out, _ = run_cli(
        capsys, "data", "inspect", "panx", "--lang", "de", "--split", "test", "--data-dir", str(fixtures)
    )
    assert rc == 0 and "panx test/de:" in out and "ner_tags_names" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["data", "inspect", "synth-xnl"], "did you mean 'synth-xnli'"),
        (["data", "inspect", "synth-xnli", "--lang", "fr"], "unknown language 'fr' for task 'synth-xnli'"),
        (["data", "inspect", "synth-xnli", "--split", "dev"], "unknown split 'dev'"),
        (["model", "prepare", "builtin:nope"], "valid built-in models: builtin:tiny-xlmr"),
        (
            ["trial", "--task", "synth-xnli", "--method", "finetune", "--psl", "16"],
            "'psl' is not valid for method 'finetune'",
        ),
        (["trial", "--task", "synth-xnli", "--lr", "0"], "lr"),
    ],
)
def test_user_errors_are_one_line_without_traceback(capsys, argv, message):
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2
    last = err.strip().splitlines()[-1]  # `trial` prints a one-line header first
    assert last.startswith("error: ") and message in last and "Traceback" not in err


def test_console_script_error_path_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "xtuner", "data", "inspect", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "error: unknown task 'nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_model_prepare_prints_the_shipped_path(capsys):
    rc, out, _ = run_cli(capsys, "model", "prepare", "builtin:tiny-xlmr")
    assert rc == 0 and Path(out.strip(), "config.json").is_file()


def test_data_prepare_loads_every_split_of_a_spec(capsys, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: p\nmodel: builtin:tiny-xlmr\ntasks: [synth-pawsx]\nmethods: {finetune: {lr: [1.0e-4]}}\n"
        "trial: {languages: [en, s5]}\n"
    )
    rc, out, _ = run_cli(capsys, "data", "prepare", str(spec))
    assert rc == 0
    assert "synth-pawsx    test       s5" in out and "all 4 splits of 1 task(s) load" in out


def test_trial_json(capsys, tmp_path):
    rc, out, _ = run_cli(
        capsys, "trial", "--task", "synth-udpos", "--method", "deep_prompt", "--psl", "4", "--lr", "1e-2",
        "--epochs", "1", "--json", "--set", "max_train_examples=32", "--set", "max_eval_examples=8",
        "--set", "languages=[en, s1]", "--set", f"cache_dir={tmp_path}",
    )  # fmt: skip
    assert rc == 0
    data = json.loads(out)
    assert set(data["test"]) == {"en", "s1"} and "f1" in data["avg"] and "f1" in data["gap"]
    assert 0 < data["trainable_params"] < data["total_params"]
