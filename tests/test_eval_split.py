"""Runs on a genuine XTREME download folder (label-stripped test files): `eval_split: validation` from the folder
alone, and labelled test files from another source per split, through the CLI trial, `xtuner data prepare`, and a
real sweep (session Ray + MLflow server) whose child runs carry the param and tag ``eval_split``."""

from __future__ import annotations

import shutil

import pytest
import yaml
from mlflow.tracking import MlflowClient
from test_data_sources import DOWNLOAD, RELEASES, stripped  # noqa: F401 - the fixture

from xtuner.cli import main as cli_main
from xtuner.sweep.runner import load_plan, run_sweep
from xtuner.trial import run_trial

TINY = {"max_seq_length": 64, "doc_stride": 16, "batch_size": 4, "eval_batch_size": 16}


def test_trial_cli_eval_split_validation_from_the_folder_alone(stripped, tiny_model, tmp_path, capsys) -> None:  # noqa: F811
    argv = ["trial", "--task", "xnli", "--model", tiny_model, "--lr", "1e-3", "--epochs", "1",
            "--data-dir", str(stripped), "--set", "languages=[en, de]", "--set", f"cache_dir={tmp_path / 'cache'}",
            "--set", "max_seq_length=64"]  # fmt: skip
    assert cli_main([*argv, "--eval-split", "validation"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps to the terminal's width
    assert "zero-shot on the dev sets (eval_split validation)" in out
    assert "the English number is the selection set itself (optimistic)" in out
    assert cli_main(argv) == 2  # the default eval_split test reads the stripped file: one error line
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "strips the labels" in err[-1] and "Traceback" not in "\n".join(err)


def test_tydiqa_selects_on_squad_dev_and_tests_on_labelled_goldp_dev(stripped, tiny_model, tmp_path) -> None:  # noqa: F811
    result = run_trial(dict(task="tydiqa", model=tiny_model, lr=1e-3, epochs=1, data_dir=str(stripped),
                            test_data=f"release:{RELEASES}", languages=["ar", "en"],
                            cache_dir=str(tmp_path / "cache"), **TINY))  # fmt: skip
    assert set(result["test"]) == {"ar", "en"} and result["eval_split"] == "test"
    assert "dev/en/f1" in result["dev"]  # selected on SQuAD v1.1 dev (3 questions), not on the GoldP test set


def test_data_prepare_reads_each_split_where_its_trials_will(stripped, tmp_path, capsys) -> None:  # noqa: F811
    spec = {"name": "p", "model": "builtin:tiny-xlmr", "data_dir": str(stripped),
            "tasks": {"xnli": {"trial": {"eval_split": "validation", "languages": ["de"]}},
                      "pawsx": {"trial": {"test_data": f"release:{RELEASES}", "languages": ["de"]}}},
            "methods": {"finetune": {"lr": 1.0e-4}}}  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert cli_main(["data", "prepare", str(path)]) == 0
    out = capsys.readouterr().out
    assert "xnli           validation de" in out and "pawsx          test       de" in out
    assert "all 6 splits of 2 task(s) load" in out


def test_data_prepare_names_the_ways_out_of_a_missing_or_stripped_test_file(stripped, tmp_path, capsys) -> None:  # noqa: F811
    """A test file missing from (or stripped in) an XTREME folder: `xtuner data prepare` gives one error line that
    names per-split sources (test_data: hub | release:<folder> | <folder>, in the spec or the trial CLI) and
    eval_split validation, except for tasks that cannot evaluate on dev (xquad)."""
    (stripped / "pawsx" / "test-de.tsv").unlink()
    shutil.copytree(DOWNLOAD / "xquad", stripped / "xquad")
    (stripped / "xquad" / "xquad.de.json").unlink()
    spec = {"name": "p", "model": "builtin:tiny-xlmr", "data_dir": str(stripped),
            "tasks": {t: {"trial": {"languages": ["de"]}} for t in ("pawsx", "xnli", "xquad")},
            "methods": {"finetune": {"lr": 1.0e-4}}}  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert cli_main(["data", "prepare", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([e for e in err if e.startswith("error:")]) == 1
    line = err[-1]
    assert line.startswith("error: 3 of 9 splits failed to load: pawsx test/de: missing file ") and ":;" not in line
    pawsx, xnli, xquad = line.split(" test/de: ")[1:]
    for text in (pawsx, xquad):
        assert "this split can come from another source, set per task in the spec (tasks." in text
        assert "test_data: hub, test_data: release:<folder>" in text and "or with xtuner trial --test-data" in text
    assert "or evaluate zero-shot on the dev sets with eval_split: validation" in pawsx
    assert "eval_split: validation is not possible for this task" in xquad
    assert "strips the labels" in xnli and "eval_split: validation" in xnli and "not for xquad, tydiqa" in xnli


def test_spec_resolves_split_sources_and_checks_eval_split(tmp_path, monkeypatch) -> None:
    from xtuner.errors import XtunerError
    from xtuner.sweep.space import build_plan
    from xtuner.sweep.spec import load_spec

    (tmp_path / "XNLI-1.0").mkdir()
    monkeypatch.chdir(tmp_path)
    base = {"name": "s", "model": "builtin:tiny-xlmr", "methods": {"finetune": {"lr": 1.0e-4}}}

    def plan(**over):
        return build_plan(load_spec({**base, **over}))

    groups = plan(tasks={"xnli": {"trial": {"test_data": "release:XNLI-1.0"}}, "pawsx": None}).groups.values()
    fixed = {g.task: g.fixed for g in groups}
    assert fixed["xnli"]["test_data"] == f"release:{tmp_path / 'XNLI-1.0'}"  # absolute, where the sweep starts
    assert fixed["xnli"]["eval_split"] == fixed["pawsx"]["eval_split"] == "test"  # always set: logged as a param
    assert "test_data" not in fixed["pawsx"]
    assert {g.fixed["eval_split"] for g in plan(tasks=["xnli"], eval_split="validation").groups.values()} == {
        "validation"
    }
    with pytest.raises(XtunerError, match=r"tasks.xnli.trial.test_data: '.*nope' is not a directory"):
        plan(tasks={"xnli": {"trial": {"test_data": "nope"}}})
    with pytest.raises(XtunerError, match=r"trial.test_data: unknown data source kind 'relase'"):
        plan(tasks=["xnli"], trial={"test_data": "relase:XNLI-1.0"})
    with pytest.raises(XtunerError, match="set eval_split either at the top level or in trial:, not both"):
        plan(tasks=["xnli"], eval_split="validation", trial={"eval_split": "test"})
    with pytest.raises(XtunerError, match=r"eval_split: Input should be 'test' or 'validation'"):
        plan(tasks=["xnli"], eval_split="dev")
    from xtuner.trial import TrialConfig

    with pytest.raises(XtunerError, match=r"invalid trial config: test_data: .*unknown data source kind 'relase'"):
        TrialConfig.from_flat({"task": "xnli", "lr": 1e-3, "test_data": "relase:/x"})
    assert TrialConfig.from_flat({"task": "xnli", "lr": 1e-3, "test_data": "hub"}).split_sources() == {"test": "hub"}


@pytest.mark.parametrize("task, why", [
    ("xquad", "XQuAD is a test set only"),
    ("tydiqa", "TyDiQA-GoldP has a train and a dev set only, and XTREME tests on the dev set"),
    ("tatoeba", "Tatoeba has one set per language, its test set"),
])  # fmt: skip
def test_eval_split_validation_is_refused_where_there_is_no_dev_set(task, why, stripped, tmp_path, capsys) -> None:  # noqa: F811
    """xquad, tydiqa and tatoeba have no dev set besides English's selection set: the spec check (dry run and run),
    `xtuner data prepare` and `xtuner trial` refuse eval_split validation with one error line, before any model
    or data loads. mlqa (MLQA_V1/dev per language) and bucc2018 (BUCC's sample) have dev sets: accepted."""
    spec = {"name": "nodev", "model": "builtin:tiny-xlmr", "data_dir": str(stripped),
            "tasks": {task: {"trial": {"eval_split": "validation"}}, "mlqa": None, "bucc2018": None},
            "methods": {"finetune": {"lr": 1.0e-4}}, "storage": str(tmp_path / "results")}  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    expect = f"eval_split 'validation' is not possible for task {task!r}: {why}"
    for argv in (["sweep", "run", str(path), "--dry-run"], ["data", "prepare", str(path)],
                 ["trial", "--task", task, "--model", "builtin:tiny-xlmr", "--lr", "1e-3", "--data-dir", str(stripped),
                  "--eval-split", "validation"]):  # fmt: skip
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()  # the trial prints its progress lines before
        assert [e for e in err if e.startswith("error: ")] == err[-1:] and expect in err[-1], (argv, err)
        assert "Traceback" not in "\n".join(err)
    if task != "tatoeba":  # the way out is named: labelled test files through test_data
        assert "eval_split test with test_data: release:" in err[-1]
    # English alone is its selection set, which exists: what an intermediate stage 1 on xquad/tydiqa reads
    from xtuner.tasks import get_task
    from xtuner.trial.run import setup_trial

    get_task(task).check_eval_split("validation", ["en"])
    if task != "tatoeba":  # retrieval has no English table (the pivot)
        assert setup_trial(dict(task=task, lr=1e-3, languages=["en"], eval_split="validation")).languages == ["en"]
    spec["tasks"] = {"mlqa": None, "bucc2018": None}
    spec["eval_split"] = "validation"
    path.write_text(yaml.safe_dump(spec))
    assert cli_main(["sweep", "run", str(path), "--dry-run"]) == 0
    assert "bucc2018: validation, mlqa: validation" in " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_sweep_on_an_xtreme_folder_labels_eval_split_in_mlflow(
    stripped, ray_cluster, mlflow_server, tiny_model, tmp_path, capsys  # noqa: F811
) -> None:
    raw = {
        "name": "evalsplit", "model": tiny_model, "data_dir": str(stripped), "epochs": 1,
        "tasks": {"xnli": {"trial": {"eval_split": "validation"}},
                  "pawsx": {"trial": {"test_data": f"release:{RELEASES}"}}},
        "methods": {"finetune": {"lr": [1.0e-3]}},
        "trial": {**TINY, "languages": ["en", "de"], "cache_dir": str(tmp_path / "cache")},
        "tracking": {"uri": mlflow_server, "experiment": "test-evalsplit"},
        "storage": str(tmp_path / "results"), "report": False,
    }  # fmt: skip
    state = run_sweep(load_plan(raw))
    assert state.finished and {r.state for r in state.trials.values()} == {"done"}
    client = MlflowClient(mlflow_server)
    # report: false -> no report logged at the end (test_report_sweep covers the default)
    assert not [a for a in client.list_artifacts(state.parent_run_id) if a.path.startswith("report")]
    exp = client.get_run(state.parent_run_id).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{state.parent_run_id}'")
    by_task = {r.data.params["task"]: r for r in runs}
    assert set(by_task) == {"xnli", "pawsx"}
    for task, split in (("xnli", "validation"), ("pawsx", "test")):
        run = by_task[task]
        assert run.data.params["eval_split"] == split and run.data.tags["xtuner.eval_split"] == split
        assert {"test/en/accuracy", "test/de/accuracy", "test/gap/accuracy"} <= set(run.data.metrics)
    m = by_task["xnli"].data.metrics  # English is scored on the selection set itself
    assert m["test/en/accuracy"] == pytest.approx(m["best/dev/en/accuracy"])
    out = capsys.readouterr().out
    assert "eval_split validation: 'test' columns are scored on the dev sets" in out
    assert "logged under report/" not in out


@pytest.mark.slow
def test_a_sweep_on_stripped_test_files_prints_each_error_in_full_once(
    stripped, ray_cluster, mlflow_server, tiny_model, tmp_path, capsys  # noqa: F811
) -> None:
    """Two trials fail on the same label-stripped test file: the end of the sweep and `xtuner sweep status` print
    that error once, in full (the progress lines cut it to 100 columns), with both trial ids."""
    raw = {
        "name": "stripped-errors", "model": tiny_model, "data_dir": str(stripped), "epochs": 1,
        "tasks": ["xnli"], "methods": {"finetune": {"lr": [1.0e-3, 3.0e-3]}},
        "trial": {**TINY, "languages": ["en", "de"], "cache_dir": str(tmp_path / "cache")},
        "tracking": {"uri": mlflow_server, "experiment": "test-stripped-errors"},
        "storage": str(tmp_path / "results"), "report": False,
    }  # fmt: skip
    state = run_sweep(load_plan(raw))
    assert {r.state for r in state.trials.values()} == {"error"}
    errors = {r.error for r in state.trials.values()}
    assert len(errors) == 1
    error = errors.pop()
    assert error and "strips the labels" in error and len(error) > 200  # longer than any progress line
    ids = sorted(state.trials)
    out = capsys.readouterr().out
    assert "2 trials failed, 1 distinct error" in out
    assert f"- error in 2 trials ({', '.join(ids)}):" in out
    assert out.count(error) == 1  # in full, once (soft-wrapped: never cut or folded)
    assert cli_main(["sweep", "status", "stripped-errors", "--storage", str(tmp_path / "results")]) == 0
    status = capsys.readouterr().out
    assert status.count(error) == 1 and f"({', '.join(ids)}):" in status
