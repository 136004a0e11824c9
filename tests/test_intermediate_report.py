"""The report's intermediate section on constructed runs (no MLflow): the best configuration per variant on English
dev, the seen/unseen split from the multi variant's stage-1 languages, per-seed differences to none, and the
stage-1 cost counted once per stage 1."""

from __future__ import annotations

import json

import pytest

from xtuner.analysis.report.runs import Run
from xtuner.intermediate.report import intermediate_section, stage1_cost

STAGE1 = json.dumps({"task": "synth-xnli", "languages": ["en", "s1", "s3"], "lr": 1e-4})
LANGS = ("en", "s1", "s2", "s3", "s4")


def run(variant: str, seed: int, lr: str, dev: float, scores: dict[str, float], **metrics: float) -> Run:
    m = {f"test/{k}/main": v for k, v in scores.items()}
    m["test/avg/main"] = sum(scores.values()) / len(scores)
    m["best/dev/en/main"] = dev
    m.update({k.replace("__", "/"): v for k, v in metrics.items()})
    settings = {"lr": lr, "intermediate_variant": variant, "intermediate": STAGE1}
    return Run(
        f"{variant}-{seed}-{lr}",
        "s",
        "synth-pawsx",
        "finetune",
        "tiny",
        seed,
        "done",
        "accuracy",
        settings,
        m,
    )


def scores(base: float, seen_bonus: float = 0.0) -> dict[str, float]:
    return {x: base + (seen_bonus if x in ("s1", "s3") else 0.0) for x in LANGS}


def test_variants_against_none_split_by_seen_languages() -> None:
    runs = []
    for seed in (1, 2, 3):
        runs.append(run("none", seed, "1e-4", 60, scores(50 + seed)))
        runs.append(
            run("none", seed, "1e-3", 40, scores(90))
        )  # the better test score, the worse dev: not chosen
        runs.append(run("en", seed, "1e-4", 61, scores(52 + seed), stage1__reused=float(seed != 1),
                        stage1__seconds=30.0))  # fmt: skip
        runs.append(run("multi", seed, "1e-4", 62, scores(51 + seed, seen_bonus=4.0 + seed),
                        stage1__reused=float(seed != 2), stage1__seconds=45.0))  # fmt: skip
    tables, lines, _ = intermediate_section(runs, store=None)
    summary = {r["variant"]: r for r in tables[0].records}
    assert summary["none"]["seen_languages"] == ["s1", "s3"] and summary["none"]["unseen_languages"] == [
        "s2",
        "s4",
    ]
    assert summary["none"]["avg"] == pytest.approx(52.0)  # lr 1e-4 chosen on dev, not 1e-3's 90 on test
    assert summary["en"]["delta_seen"] == pytest.approx(2.0) and summary["en"]["delta_seen_sd"] == 0.0
    assert summary["multi"]["delta_unseen"] == pytest.approx(1.0)
    assert summary["multi"]["delta_seen"] == pytest.approx(1.0 + 4.0 + 2.0)  # 1 + 4 + seed, seeds 1..3
    assert summary["multi"]["delta_seen_sd"] == pytest.approx(1.0)
    assert stage1_cost(runs) == (75.0, 2)  # one en and one multi stage 1 trained; the rest reused
    per_lang = {r["lang"]: r for r in tables[1].records}
    assert per_lang["s1"]["group"] == "seen" and per_lang["s4"]["group"] == "unseen"
    assert per_lang["s3"]["finetune multi - none"] == pytest.approx(7.0)
    assert lines == [f"synth-pawsx: {v} vs none (finetune): not tested (no per-example predictions)"
                     for v in ("en", "multi")]  # fmt: skip


def test_no_intermediate_runs_no_section() -> None:
    plain = Run("r", "s", "synth-pawsx", "finetune", "tiny", 1, "done", "accuracy", {"lr": "1"}, {})
    assert intermediate_section([plain], store=None) == ([], [], {})
    # every trial logs intermediate_variant none: a sweep without a stage 1 has no section either
    nones = [run("none", seed, "1e-4", 60, scores(50)) for seed in (1, 2, 3)]
    assert intermediate_section(nones, store=None) == ([], [], {})
    other = [run("en", seed, "1e-4", 61, scores(52)) for seed in (1, 2, 3)]
    for r in other:
        r.task = "synth-xnli"
    tables, _, _ = intermediate_section(nones + other, store=None)  # only the task that has a stage 1
    assert tables and {rec["task"] for t in tables for rec in t.records} == {"synth-xnli"}


def test_noisy_multi_is_its_own_row() -> None:
    noisy = json.dumps({**json.loads(STAGE1), "noise": 0.3})
    runs = [run("none", 1, "1e-4", 60, scores(50)), run("multi", 1, "1e-4", 61, scores(52, 3.0)),
            run("multi", 1, "1e-4", 62, scores(51, 1.0))]  # fmt: skip
    runs[2].settings["intermediate"] = noisy
    tables, _, _ = intermediate_section(runs, store=None)
    rows = {r["variant"]: r for r in tables[0].records}
    assert list(rows) == ["none", "multi", "multi+noise0.3"]
    assert rows["multi"]["delta_seen"] == pytest.approx(5.0) and rows["multi+noise0.3"]["delta_seen"] == 2.0
