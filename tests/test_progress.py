"""Signs of life during long work, as a user sees them when stdout/stderr are not a terminal (a log, CI): `xtuner
trial` names what it is doing and reports training steps and the per-language evaluation with progress and ETA;
`xtuner data prepare` prints a line per split as it is ready; every line fits in 100 columns. (The per-evaluation
lines of `xtuner sweep run` are checked on the sweeps of tests/test_sweep.py: tests/export_checks.py.)"""

from __future__ import annotations

import io
from pathlib import Path

from xtuner.cli import main
from xtuner.progress import ConsoleProgress, fit_line, fmt_seconds, plain_progress


def test_fit_line_cuts_the_params_first_then_the_detail() -> None:
    head = "[ 3/108] dev     6f383_00017 synth-panx deep_prompt"
    params = "lr=0.01 psl=32 warmup_ratio=0.06 weight_decay=0.01"
    detail = "epoch 2: f1 84.1 (3m05s)"
    line = fit_line(head, params, detail, 100)
    assert len(line) == 100 and line.startswith(head + " lr=0.01") and line.endswith("~: " + detail)
    assert fit_line(head, "lr=0.01", detail) == f"{head} lr=0.01: {detail}"  # fits: unchanged
    tight = fit_line(head, params, "x" * 80, 100)
    assert len(tight) == 100 and tight.endswith("~") and params not in tight
    assert [fmt_seconds(s) for s in (12.4, 185, 7620)] == ["12 s", "3m05s", "2h07m"]


def test_plain_progress_lines_carry_the_eta_and_come_at_most_once_a_period() -> None:
    assert plain_progress("training steps", 30, 120, 60.0) == "  training steps: 30/120 (25%), 1m00s, ETA 3m00s"
    assert "ETA" not in plain_progress("training steps", 120, 120, 240.0)
    out = io.StringIO()
    progress = ConsoleProgress(out, live=False, period=3600)
    progress.start("train", 100, "training steps")
    for step in range(1, 101):  # the period is not over: only the start and the end are printed
        progress.advance("train", step)
    progress.finish("train")
    assert out.getvalue().splitlines() == ["  training steps: 0/100", "  training steps: 100/100 (100%), 0 s"]


def test_trial_says_what_it_does_and_shows_steps_and_languages(capsys, tmp_path: Path, tiny_model: str) -> None:
    rc = main(["trial", "--task", "synth-udpos", "--model", tiny_model, "--method", "deep_prompt", "--psl", "4",
               "--epochs", "2", "--set", "max_train_examples=32", "--set", "max_eval_examples=8", "--set",
               "batch_size=16", "--set", "languages=[en, s1, s2]", "--set", f"cache_dir={tmp_path}"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0
    lines = err.splitlines()
    assert lines[0] == f"trial: synth-udpos / deep_prompt / {tiny_model}"  # before torch is even imported
    assert lines[1] == "  loading torch and transformers ..." and lines[2] == "  lr 0.01, seed 1"
    order = ["checking the task, model and method settings", "loading + tokenising splits (cached): 5/5 (100%)",
             "building the deep_prompt model", "training steps: 0/4", "epoch 1.00 step 2: en-dev f1",
             "training steps: 4/4 (100%)", "zero-shot test, per language: 3/3 (100%)"]  # fmt: skip
    found = [next(i for i, line in enumerate(lines) if part in line) for part in order]
    assert found == sorted(found), lines
    assert all(len(line) <= 100 for line in lines)


def test_data_prepare_prints_each_split_as_it_is_ready(capsys, tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: p\nmodel: builtin:tiny-xlmr\ntasks: [synth-pawsx, synth-xnli]\n"
                    "methods: {finetune: {lr: [1.0e-4]}}\ntrial: {languages: [en, s5]}\n")  # fmt: skip
    assert main(["data", "prepare", str(spec)]) == 0
    lines = capsys.readouterr().out.splitlines()
    steps = [line for line in lines if line.startswith("  [")]
    assert [line.split("]")[0].strip(" [") for line in steps] == [f"{i}/8" for i in range(1, 9)]
    assert "synth-xnli     test       s5" in steps[-1] and steps[-1].endswith(" rows")
    assert lines[0].startswith("preparing the data of 2 task(s)") and lines[-1].startswith("all 8 splits")
