"""The ``intermediate`` block of a sweep spec: expanded into a variant axis and stage-1 settings, and each bad block
rejected before Ray starts with one error naming its key."""

from __future__ import annotations

import pytest

from xtuner.errors import XtunerError
from xtuner.intermediate.settings import seen_languages
from xtuner.sweep.space import build_plan
from xtuner.sweep.spec import load_spec
from xtuner.trial.config import TrialConfig


def spec(**block) -> dict:
    inter = {"variant": ["none", "en", "multi"], "task": "synth-xnli", "languages": ["en", "s1", "s3", "s5"],
             "lr": 1.0e-4, "epochs": 1, **block}  # fmt: skip
    inter = {k: v for k, v in inter.items() if v is not None}
    return {
        "name": "t", "model": "builtin:tiny-xlmr", "epochs": 1,
        "tasks": {"synth-pawsx": {"intermediate": inter}},
        "methods": {"finetune": {"lr": [1.0e-4, 3.0e-4]}, "deep_prompt": {"lr": 1.0e-2, "psl": 4}},
    }  # fmt: skip


def test_variant_is_an_axis_and_settings_reach_every_trial() -> None:
    plan = build_plan(load_spec(spec()))
    assert plan.n_trials == 2 * 3 + 1 * 3  # finetune: 2 lrs x 3 variants; deep_prompt: 3 variants
    flats = [plan.groups[g].flat(p) for g, p in plan.grid]
    assert sorted({f["intermediate_variant"] for f in flats}) == ["en", "multi", "none"]
    for flat in flats:
        cfg = TrialConfig.from_flat(flat)
        assert cfg.intermediate is not None and cfg.intermediate.task == "synth-xnli"
        assert cfg.intermediate.budget == "match_en" and cfg.intermediate.lr == 1.0e-4
    multi = next(f for f in flats if f["intermediate_variant"] == "multi")
    en = next(f for f in flats if f["intermediate_variant"] == "en")
    none = next(f for f in flats if f["intermediate_variant"] == "none")
    assert seen_languages(multi) == ["en", "s1", "s3", "s5"]
    assert seen_languages(en) == ["en"] and seen_languages(none) == []


def test_one_variant_is_fixed_and_languages_default_to_every_train_language() -> None:
    plan = build_plan(load_spec(spec(variant="multi", languages=None)))
    assert plan.n_trials == 3
    flat = plan.groups["g00"].flat(plan.grid[0][1])
    assert flat["intermediate_variant"] == "multi"
    assert seen_languages(flat) == ["en", "s1", "s2", "s3", "s4", "s5", "s6"]


def test_random_search_chooses_the_variant() -> None:
    raw = spec(variant=["en", "multi"])
    raw.update(search="random", num_samples=2)
    plan = build_plan(load_spec(raw))
    assert all(g.axes["intermediate_variant"] == ["en", "multi"] for g in plan.groups.values())


@pytest.mark.parametrize(
    ("block", "needles"),
    [
        ({"task": "synth-xnlii"}, ["tasks.synth-pawsx.intermediate.task", "unknown task", "synth-xnli"]),
        ({"task": "synth-pawsx"}, ["tasks.synth-pawsx.intermediate.task", "must differ from the target"]),
        ({"task": "synth-tatoeba"}, ["intermediate.task", "retrieval"]),
        ({"task": "xnli", "languages": ["en", "xx"]}, ["intermediate.languages.1", "unknown language 'xx'"]),
        (
            {"task": "udpos", "languages": ["en", "de"]},
            [
                "intermediate.languages.1",
                "'udpos' has no train data in 'de'",
                "languages with train data: en",
            ],
        ),
        (
            {"task": "udpos", "languages": None, "variant": "multi"},
            ["intermediate.task", "multi variant needs"],
        ),
        ({"languages": ["en", "s1", "s1"]}, ["intermediate.languages.2", "listed twice"]),
        ({"budget": "half"}, ["tasks.synth-pawsx.intermediate.budget", "match_en", "all"]),
        ({"budget": 100}, ["tasks.synth-pawsx.intermediate.budget"]),
        ({"variant": ["none", "fr"]}, ["intermediate.variant", "none", "multi"]),
        ({"variant": ["en", "en"]}, ["intermediate.variant", "distinct"]),
        ({"method": "deep_prompt"}, ["intermediate.method", "finetune"]),
        ({"lr": 0}, ["intermediate.lr", "greater than 0"]),
        ({"noise": 1.5}, ["intermediate.noise", "less than 1"]),
        ({"epoch": 1}, ["intermediate", "unknown key 'epoch'", "epochs"]),
        ({"variant": None}, ["intermediate.variant", "required"]),
    ],
)
def test_bad_intermediate_block_is_one_error_naming_the_key(block: dict, needles: list[str]) -> None:
    raw = spec(**{k: v for k, v in block.items() if v is not None})
    for k, v in block.items():
        if v is None:
            raw["tasks"]["synth-pawsx"]["intermediate"].pop(k, None)
    with pytest.raises(XtunerError) as e:
        build_plan(load_spec(raw))
    message = str(e.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_intermediate_keys_are_not_trial_settings() -> None:
    raw = spec()
    raw["trial"] = {"intermediate_variant": "en"}
    with pytest.raises(XtunerError, match=r"trial.intermediate_variant: .*tasks.<task>.intermediate"):
        build_plan(load_spec(raw))
    raw = spec()
    raw["methods"]["finetune"]["intermediate_dir"] = "/tmp/x"
    with pytest.raises(XtunerError, match=r"methods.finetune.intermediate_dir: .*storage"):
        build_plan(load_spec(raw))


def test_estimate_counts_each_stage1_once() -> None:
    from xtuner.intermediate.estimate import stage1_trials
    from xtuner.sweep.report import planned_trials

    raw = spec(task="xnli", languages=None)
    raw.update(model="xlm-roberta-large", seeds=[1, 2])
    raw["tasks"]["panx"] = {"intermediate": dict(raw["tasks"]["synth-pawsx"]["intermediate"])}
    trials = planned_trials(build_plan(load_spec(raw)))
    stage1 = stage1_trials(trials)
    # 2 targets x 3 methods/lrs x 3 variants x 2 seeds trials, but one stage 1 per (variant != none, seed)
    assert len(trials) == 2 * 3 * 3 * 2 and len(stage1) == 2 * 2
    assert (
        sorted((s["arm"], s["train_examples"]) for s in stage1)
        == [("stage1-en", 392_702)] * 2 + [("stage1-multi", 392_702)] * 2
    )  # match_en: the English budget, split over the languages


def test_xstilts_spec_dry_run_estimates_stage1_once() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "xtuner", "sweep", "run", "sweeps/xstilts.yaml", "--dry-run"],
                          capture_output=True, text=True, timeout=600, cwd=root, env={**__import__("os").environ,
                          "COLUMNS": "200"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "trials: 66" in out and "GPU-hours" in out
    for line in ("xnli/stage1-en/xlm-roberta-large: 3 trials", "xnli/stage1-multi/xlm-roberta-large: 3 trials",
                 "xquad/stage1-en/xlm-roberta-large: 3 trials"):  # fmt: skip
        assert line in out, out[-3000:]
