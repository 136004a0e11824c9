"""Protocol presets (xtuner.protocols) and arms of methods: in a sweep: resolution, errors, the paper specs, the
fidelity table, and the MLflow params a trial logs (a real `mlflow server`; no Ray, no training)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from xtuner.cluster.estimate import dev_evaluations, trial_examples
from xtuner.errors import XtunerError
from xtuner.protocols import REQUIRED, get_protocol, markdown_table, protocol_names, resolve
from xtuner.sweep.report import planned_trials, print_plan
from xtuner.sweep.space import build_plan
from xtuner.sweep.spec import load_spec
from xtuner.sweep.state import SweepState, TrialRecord
from xtuner.sweep.tracking import MlflowWriter
from xtuner.trial.config import TrialConfig

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "xtreme" / "download"


def test_a_preset_fills_what_the_config_leaves_unset_and_explicit_settings_win() -> None:
    base = {"task": "xnli", "method": "deep_prompt", "protocol": "mpt"}
    full = resolve(base)
    assert (full["lr"], full["psl"], full["batch_size"], full["epochs"]) == (1e-3, 32, 16, 30)
    assert (full["selection"], full["dev_split"], full["lr_schedule"]) == ("loss", "mnli_matched", "linear")
    assert full["prefix_dropout"] == full["backbone_dropout"] == 0.1
    assert full["protocol_version"] == get_protocol("mpt").version and full["protocol_overrides"] == []
    mine = resolve({**base, "epochs": 1, "method_settings": {"psl": 8}})
    assert mine["epochs"] == 1 and "psl" not in mine and mine["protocol_overrides"] == ["epochs", "psl"]
    assert TrialConfig.from_flat({**base, "epochs": 1, "method_settings": {"psl": 8}}).method_settings["psl"] == 8
    assert resolve(full) == full and resolve(mine) == mine  # resolving twice changes nothing
    assert resolve({"task": "xnli", "lr": 1e-3}) == {"task": "xnli", "lr": 1e-3}  # no protocol: untouched


def test_trial_config_of_each_reference_recipe() -> None:
    qa_pt = TrialConfig.from_flat({"task": "xquad", "method": "deep_prompt", "protocol": "mpt"})
    assert (qa_pt.lr_schedule, qa_pt.lr_gamma, qa_pt.selection) == ("exponential", 0.95, "metric")
    assert (qa_pt.max_seq_length, qa_pt.doc_stride, qa_pt.batch_size) == (384, 128, 8)
    assert qa_pt.method_settings["prefix_dropout"] == qa_pt.method_settings["backbone_dropout"] == 0.2
    qa_ft = TrialConfig.from_flat({"task": "xquad", "method": "finetune", "protocol": "mpt", "lr": 3e-5})
    assert (qa_ft.batch_size, qa_ft.grad_accum_steps, qa_ft.epochs, qa_ft.selection) == (4, 2, 2, "last")
    pos_ft = TrialConfig.from_flat({"task": "udpos", "method": "finetune", "protocol": "mpt", "lr": 2e-5})
    assert (pos_ft.lr_schedule, pos_ft.epochs, pos_ft.batch_size) == ("exponential", 5, 16)
    xt = TrialConfig.from_flat({"task": "xnli", "method": "finetune", "protocol": "xtreme"})
    assert (xt.lr, xt.epochs, xt.batch_size, xt.eval_interval) == (3e-5, 5, 32, 100)
    assert (xt.selection, xt.save_strategy, xt.dev_split) == ("metric", "best", "validation")
    qa = TrialConfig.from_flat({"task": "tydiqa", "method": "finetune", "protocol": "xtreme"})
    assert (qa.warmup_steps, qa.weight_decay, qa.selection, qa.lr) == (500, 1e-4, "last", 3e-5)


@pytest.mark.parametrize(
    "flat,match",
    [
        ({"task": "xnli", "protocol": "mtp"}, "did you mean 'mpt'"),
        ({"task": "panx", "method": "deep_prompt", "protocol": "mpt"}, "no settings for task 'panx'"),
        ({"task": "xnli", "method": "deep_prompt", "protocol": "xtreme"}, "no settings for method 'deep_prompt'"),
        ({"task": "xnli", "method": "finetune", "protocol": "mpt"}, "leaves lr to the spec.*run_mnli_xlm_ft.sh:5"),
        ({"task": "tydiqa", "method": "deep_prompt", "protocol": "mpt"}, "leaves lr, psl to the spec"),
        ({"task": "xnli", "protocol": "xtreme", "protocol_version": 0}, "pins version 0"),
        ({"task": "xnli", "lr": 1e-3, "protocol_version": 1}, "no protocol"),
    ],
)
def test_protocol_problems_are_one_clear_error(flat: dict, match: str) -> None:
    with pytest.raises(XtunerError, match=match):
        TrialConfig.from_flat(flat)


def test_settings_that_contradict_each_other_are_errors() -> None:
    with pytest.raises(XtunerError, match="warmup_ratio or warmup_steps"):
        TrialConfig.from_flat({"task": "xnli", "lr": 1e-3, "warmup_ratio": 0.1, "warmup_steps": 10})
    with pytest.raises(XtunerError, match="needs selection 'metric' or 'loss'"):
        TrialConfig.from_flat({"task": "xnli", "lr": 1e-3, "save_strategy": "best", "selection": "last"})


def test_every_preset_value_has_a_source_or_an_explanation_and_docs_hold_the_tables() -> None:
    doc = (ROOT / "docs" / "fidelity.md").read_text()
    for name in protocol_names():
        proto = get_protocol(name)
        for task, method in proto.covers():
            for key, s in proto.entries[task][method].items():
                assert s.source or s.note, (name, task, method, key)
                if s.source:  # a permanent link: the file's commit is known
                    assert proto.url(s.source).startswith(f"https://github.com/{proto.repo}/blob/")
                    assert "/blob/main/" not in proto.url(s.source), s.source
                if s.value is not REQUIRED and key in TrialConfig.model_fields:
                    TrialConfig.model_validate({"task": task, "lr": 1e-3, key: s.value})  # a valid value
        # the table in docs/fidelity.md is the one the code renders (regenerate: `xtuner protocols NAME`)
        assert markdown_table(proto) in doc, f"docs/fidelity.md is out of date for protocol {name!r}"


def test_paper_spec_runs_both_finetuning_arms_and_the_prompt_arm_with_three_seeds() -> None:
    plan = build_plan(load_spec(ROOT / "sweeps" / "paper.yaml"))
    trials = planned_trials(plan)
    arms = {(t["arm"], t["method"], t["protocol"]) for t in trials}
    assert arms == {("deep_prompt", "deep_prompt", "mpt"), ("finetune-mpt", "finetune", "mpt"),
                    ("finetune-xtreme", "finetune", "xtreme")}  # fmt: skip
    for task in ("xnli", "pawsx", "udpos", "xquad"):
        for arm in ("deep_prompt", "finetune-mpt", "finetune-xtreme"):
            assert {t["seed"] for t in trials if t["task"] == task and t["arm"] == arm} == {1, 2, 3}
    assert len(trials) == 4 * 3 * (1 + 3 + 1)  # finetune-mpt searches 3 learning rates
    ft_xt = next(t for t in trials if t["arm"] == "finetune-xtreme" and t["task"] == "xnli")
    assert (ft_xt["lr"], ft_xt["eval_interval"], ft_xt["save_strategy"]) == (3e-5, 100, "best")
    pt = next(t for t in trials if t["arm"] == "deep_prompt" and t["task"] == "xnli")
    assert (pt["dev_split"], pt["psl"], pt["lr"], pt["gpu"]) == ("mnli_matched", 32, 1e-3, 0.5)
    console = Console(record=True, width=250)
    print_plan(plan, console)
    text = console.export_text()
    assert "trials: 60" in text and "GPU-hours (rough" in text
    assert "finetune-xtreme" in text and "protocol=xtreme" in text and "protocol=mpt" in text
    assert "xnli/finetune-mpt/xlm-roberta-large: 9 trials" in text  # the estimate tells the arms apart
    # each trial's row shows the schedule and the dev split selection reads, resolved from the arm's protocol
    rows = {(r.split("│")[2].strip(), r.split("│")[3].strip()): r for r in text.splitlines() if r.count("│") == 6}
    assert "lr_schedule=linear" in rows[("xnli", "deep_prompt")] and "dev_split=mnli_matched" in rows[("xnli", "deep_prompt")]
    assert "dev_split=validation" in rows[("xnli", "finetune-xtreme")]
    assert "lr_gamma=0.95 lr_schedule=exponential" in rows[("udpos", "finetune-mpt")]
    assert "lr_gamma" not in rows[("udpos", "finetune-xtreme")] and "lr_schedule=linear" in rows[("udpos", "finetune-xtreme")]
    narrow = Console(record=True, width=80)  # a terminal's width: every value whole, the model in the title
    print_plan(plan, narrow)
    small = narrow.export_text()
    assert "dev_split=mnli_matched" in small and "lr_schedule=exponential" in small and "…" not in small
    assert "60 trials (grid, xlm-roberta-large)" in small

    full = planned_trials(build_plan(load_spec(ROOT / "sweeps" / "xtreme.yaml")))
    assert {t["task"] for t in full} == {"xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa"}
    panx = {t["arm"]: t for t in full if t["task"] == "panx" and t["seed"] == 1}
    assert panx["deep_prompt"]["protocol"] is None and panx["finetune-xtreme"]["protocol"] == "xtreme"
    tydi = next(t for t in full if t["task"] == "tydiqa" and t["arm"] == "deep_prompt")
    assert tydi["protocol_overrides"] == [] and (tydi["lr"], tydi["psl"]) == (5e-3, 16)


@pytest.mark.parametrize("name", ["paper", "xtreme"])
def test_the_commands_in_a_paper_specs_header_run_as_written(name, monkeypatch, capsys) -> None:
    """Every `xtuner ...` command in the spec's comment works from the repository root (sweeps with --dry-run)."""
    import re
    import shlex

    from xtuner.cli import main as cli_main

    header = [ln for ln in (ROOT / "sweeps" / f"{name}.yaml").read_text().splitlines() if ln.startswith("#")]
    commands = [m for ln in header for m in re.findall(r"(?:^#\s+|`)xtuner ([a-z][^`]*?)(?:`|$)", ln)]
    assert f"sweep run sweeps/{name}.yaml --dry-run" in commands and len(commands) >= 2, commands
    monkeypatch.chdir(ROOT)
    for command in commands:
        argv = shlex.split(command)
        if argv[:2] == ["sweep", "run"] and "--dry-run" not in argv:
            argv.append("--dry-run")  # the header's real-run command (HEAD_NODE is a placeholder), validated
        capsys.readouterr()
        rc = cli_main(argv)
        out, err = capsys.readouterr()
        assert rc == 0, (command, err)
        if argv[:2] == ["sweep", "run"]:
            assert "GPU-hours (rough" in out and f"trials: {60 if name == 'paper' else 105}" in out


def _spec(**over) -> dict:
    raw = {"name": "arms", "model": "xlm-roberta-large", "tasks": ["xnli"], "storage": "/tmp/x",
           "methods": {"finetune": {"lr": 2e-5}}}  # fmt: skip
    raw.update(over)
    return raw


@pytest.mark.parametrize(
    "over,where,match",
    [
        ({"methods": {"ft-x": {"protocol": "xtreme"}}}, "methods.ft-x", "says which method it runs"),
        ({"methods": {"ft-x": {"method": "fintune", "protocol": "xtreme"}}}, "methods.ft-x.method",
         "did you mean 'finetune'"),
        ({"methods": {"ft": {"method": "finetune", "protocol": "mpt"}}}, "methods.ft.protocol", "leaves lr"),
        ({"methods": {"ft": {"method": "finetune", "lr": 1e-5, "dev_split": "mnli"}}}, "methods.ft.dev_split",
         "unknown dev split 'mnli'"),
        ({"tasks": {"xnli": {"methods": {"finetune": {"method": "lora"}}}}}, "tasks.xnli.methods.finetune.method",
         "methods.<arm> only"),
        ({"tasks": ["pawsx"], "methods": {"deep_prompt": {"protocol": "mpt", "dev_split": "mnli_matched"}}},
         "methods.deep_prompt.dev_split", "for task 'pawsx'"),
        # xlm-roberta-large is not in the cache here: its known 512 positions bound mpt's 496 tokens + psl 32
        ({"tasks": ["udpos"], "methods": {"deep_prompt": {"protocol": "mpt", "psl": 32}}}, "methods.deep_prompt.psl",
         "task udpos, method deep_prompt: psl 32 \\+ max_seq_length 496 = 528 positions"),
        ({"methods": {"finetune": {"lr": 2e-5, "max_seq_length": 600}}}, "methods.finetune.max_seq_length",
         "more than model 'xlm-roberta-large' takes \\(512 tokens"),
    ],
)
def test_arm_and_protocol_mistakes_name_the_spec_path(over: dict, where: str, match: str) -> None:
    with pytest.raises(XtunerError, match=match) as err:
        build_plan(load_spec(_spec(**over)))
    assert where in str(err.value)


def test_arms_take_their_methods_resources_and_a_protocol_can_be_a_searched_setting() -> None:
    spec = load_spec(_spec(
        methods={"ft-a": {"method": "finetune", "lr": 1e-5}, "ft-b": {"method": "finetune", "protocol": "xtreme"},
                 "finetune": {"protocol": ["mpt", "xtreme"], "lr": 2e-5}},
        resources={"cpu": 1, "gpu": 1, "methods": {"finetune": {"cpu": 2, "gpu": 0.5}, "ft-a": {"cpu": 3, "gpu": 1}}},
    ))  # fmt: skip
    plan = build_plan(spec)
    assert plan.resources("ft-a") == (3, 1) and plan.resources("ft-b") == (2, 0.5)  # own, else its method's
    by_arm: dict[str, list[dict]] = {}
    for t in planned_trials(plan):
        by_arm.setdefault(t["arm"], []).append(t)
    assert [t["method"] for t in by_arm["ft-a"]] == ["finetune"] and by_arm["ft-a"][0].get("protocol") is None
    assert by_arm["ft-b"][0]["lr"] == 3e-5
    searched = {t["protocol"]: t for t in by_arm["finetune"]}  # two grid points, one group
    assert set(searched) == {"mpt", "xtreme"} and searched["xtreme"]["protocol_overrides"] == ["lr"]
    assert searched["mpt"]["epochs"] == 2 and searched["xtreme"]["epochs"] == 5


def test_the_estimate_counts_dev_evaluations_of_interval_and_dev_split() -> None:
    xtreme = {"task": "xnli", "epochs": 5, "eval_interval": 100, "batch_size": 32}
    assert dev_evaluations(xtreme, 392_702) == math.ceil(5 * math.ceil(392_702 / 32) / 100) == 614
    assert dev_evaluations({**xtreme, "grad_accum_steps": 2}, 392_702) == 307
    assert dev_evaluations({"epochs": 30}, 392_702) == 30
    assert trial_examples({"task": "xnli", "dev_split": "mnli_matched"})[1] == 9_815
    assert trial_examples({"task": "xnli", "dev_split": "validation"})[1] == 2_490


def test_mlflow_params_name_the_protocol_and_every_resolved_setting(mlflow_server: str, tmp_path: Path) -> None:
    """The params the driver logs for a trial (SweepPlan.to_flat, through the real MlflowWriter to a real server):
    the arm as the xtuner.method tag, the registered method, the protocol, its version, every preset value, and
    every other setting the trial resolves to (TrialConfig's and the method's own, defaults included)."""
    from xtuner.methods import validate_settings
    from xtuner.sweep.run_meta import as_written

    raw = _spec(tasks=["xnli", "xquad"],
                methods={"finetune-mpt": {"method": "finetune", "protocol": "mpt", "lr": 2e-5},
                         "finetune-xtreme": {"method": "finetune", "protocol": "xtreme", "epochs": 1},
                         "deep_prompt": {"protocol": "mpt"}},
                tracking={"uri": mlflow_server, "experiment": "protocol-params"})  # fmt: skip
    spec = load_spec(raw)
    plan = build_plan(spec)
    state = SweepState("arms", spec=spec.model_dump(mode="json"), tracking_uri=mlflow_server)
    writer = MlflowWriter(mlflow_server, "protocol-params")
    writer.open_parent(state, state.spec, str(tmp_path))
    client = MlflowClient(mlflow_server)
    seen = set()
    for i, (key, params) in enumerate(plan.grid):
        g = plan.groups[key]
        rec = TrialRecord(f"t{i}", key, g.task, g.method, g.model, g.seed, g.main_metric,
                          plan.to_flat({"point": {"group": key, "params": params}}), g.searched)  # fmt: skip
        writer.open_child(state, rec)
        run = client.get_run(rec.run_id)
        logged, protocol, method = run.data.params, rec.params["protocol"], rec.params["method"]
        preset = get_protocol(protocol).settings(g.task, method)
        assert run.data.tags["xtuner.method"] == g.method and method == ("deep_prompt" if g.method == "deep_prompt"
                                                                           else "finetune") == logged["method"]
        assert logged["protocol"] == protocol and logged["protocol_version"] == str(get_protocol(protocol).version)
        for k, s in preset.items():  # every resolved setting is a param, with the preset's value unless overridden
            value = rec.params[k]
            assert logged[k] == str(as_written(value)), k  # integral floats as ints: epochs 2, not 2.0
            if k not in rec.params["protocol_overrides"] and s.value is not REQUIRED:
                assert value == s.value, k
        cfg = TrialConfig.from_flat(rec.params)  # and every other setting, at its default where nothing set it
        resolved = {**cfg.model_dump(exclude={"method_settings"}),
                    **validate_settings(method, cfg.method_settings).model_dump()}  # fmt: skip
        missing = sorted(k for k, v in resolved.items() if v is not None and k not in logged)
        assert not missing, (g.method, missing)
        overrides = {"finetune-mpt": '[]', "finetune-xtreme": '["epochs"]', "deep_prompt": '[]'}[g.method]
        assert logged["protocol_overrides"] == overrides
        seen.add((g.task, g.method))
        if (g.task, g.method) == ("xnli", "finetune-mpt"):
            assert (logged["selection"], logged["dev_split"], logged["lr_schedule"]) == ("last", "mnli_matched", "linear")
        if (g.task, g.method) == ("xquad", "deep_prompt"):  # SQuAD prompt tuning: the exponential schedule, dropout
            assert (logged["lr_schedule"], logged["lr_gamma"], logged["selection"]) == ("exponential", "0.95", "metric")
            assert (logged["psl"], logged["prefix_dropout"], logged["backbone_dropout"]) == ("16", "0.2", "0.2")
            assert (logged["shift_positions"], logged["max_seq_length"], logged["doc_stride"]) == ("True", "384", "128")
    assert len(seen) == 6
