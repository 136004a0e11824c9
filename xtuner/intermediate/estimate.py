"""Stage 1 in the dry run's GPU-hours estimate: each distinct stage 1 of a sweep counted once.

`stage1_trials(trials)` turns the planned trials (flat configs plus resources, as `xtuner.sweep.report
.planned_trials` gives them) into one pseudo-trial per distinct stage 1: the intermediate task trained with the
stage-1 settings on the variant's budget (``en`` and ``match_en``: the English train set, capped by
``max_train_examples``; ``all``: that many per language), its dev set evaluated each epoch, no test set. Two trials
share a stage 1 when everything but the data identity of their stage-1 key matches (`stage1.stage1_settings`:
model, variant, languages, settings, seed, precision, dev cap), as the sweep's store shares them. Tasks whose size
`xtuner.cluster.estimate.TASK_SIZES` does not know (the synthetic suite) are listed as not estimated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from xtuner.intermediate.settings import IntermediateSettings
from xtuner.intermediate.stage1 import stage1_settings


def stage1_trials(trials: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    from xtuner.cluster.estimate import TASK_SIZES
    from xtuner.tasks import get_task

    out: dict[str, dict[str, Any]] = {}
    for t in trials:
        variant = t.get("intermediate_variant", "none")
        if variant == "none" or not t.get("intermediate"):
            continue
        inter = IntermediateSettings.model_validate(t["intermediate"])
        task = get_task(inter.task)
        langs = inter.stage1_languages(variant, task.source_lang, list(task.train_languages))
        ident = json.dumps([t.get("model"), variant, langs, stage1_settings(variant, inter), t.get("seed"),
                            t.get("precision"), t.get("max_eval_examples")], sort_keys=True, default=str)  # fmt: skip
        if ident in out:
            continue
        trial: dict[str, Any] = {
            "task": inter.task, "method": inter.method, "model": t.get("model"), "epochs": inter.epochs,
            "max_seq_length": inter.max_seq_length, "batch_size": inter.batch_size, "languages": [],
            "test_examples": 0, "max_eval_examples": t.get("max_eval_examples"), "gpu": t.get("gpu", 1),
            "cpu": t.get("cpu", 1), "arm": f"stage1-{variant}",
        }  # fmt: skip
        n_en = TASK_SIZES.get(inter.task, {}).get("train")
        if n_en is not None:
            n_en = min(n_en, inter.max_train_examples or n_en)
            per_lang = variant == "multi" and inter.budget == "all"
            trial["train_examples"] = n_en * (len(langs) if per_lang else 1)
        out[ident] = trial
    return list(out.values())
