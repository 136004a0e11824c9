"""The ``intermediate`` block of a sweep spec's task, checked and turned into trial settings (`xtuner.intermediate`).

Each problem is one XtunerError naming the spec path: an unknown intermediate task (did you mean ...), the target
task itself, a task that does not train (retrieval), a stage-1 method other than fine-tuning, a language without
train data for the intermediate task (or listed twice), and a ``multi`` variant whose languages are English alone.
The shape (unknown keys, a bad ``budget`` or ``variant``, ranges) is checked by the spec's pydantic model.

Every trial of the task gets ``intermediate`` (the stage-1 settings, one dict) and ``intermediate_variant``: fixed
for one variant, a grid axis (or a choice under random/optuna search) for a list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xtuner.errors import unknown_name
from xtuner.intermediate.settings import STAGE1_METHODS

if TYPE_CHECKING:
    from xtuner.sweep.spec import SweepSpec


def intermediate_block(
    spec: SweepSpec, t: str
) -> tuple[dict[str, Any], dict[str, list[Any]], dict[str, list[str]]]:
    """(fixed settings, axes, origin) that the task's intermediate block adds to each of its groups."""
    from xtuner.tasks import get_task, task_names
    from xtuner.tasks.base import HeadType

    block = spec.tasks[t].intermediate
    if block is None:
        return {}, {}, {}
    loc = ["tasks", t, "intermediate"]
    valid = task_names()
    if block.task not in valid:
        raise spec.error(loc + ["task"], str(unknown_name("task", block.task, valid)))
    if block.task == t:
        raise spec.error(loc + ["task"], f"the intermediate task must differ from the target task {t!r}")
    inter = get_task(block.task)
    if inter.head == HeadType.RETRIEVAL:
        raise spec.error(
            loc + ["task"], f"task {block.task!r} is a retrieval task: it has no training to run"
        )
    if block.method not in STAGE1_METHODS:
        raise spec.error(loc + ["method"], f"stage 1 trains the encoder itself: method {', '.join(STAGE1_METHODS)}"
                         f" (got {block.method!r})")  # fmt: skip
    for i, lang in enumerate(block.languages or []):
        where = loc + ["languages", str(i)]
        if lang not in inter.languages:
            raise spec.error(where, str(unknown_name("language", lang, inter.train_languages,
                                                     where=f"with train data for task {block.task!r}")))  # fmt: skip
        if lang not in inter.train_languages:
            raise spec.error(where, f"task {block.task!r} has no train data in {lang!r}; languages with train "
                             f"data: {', '.join(inter.train_languages)}")  # fmt: skip
        if block.languages.index(lang) != i:
            raise spec.error(where, f"language {lang!r} is listed twice")
    variants = list(block.variant)
    langs = block.languages or list(inter.train_languages)
    if "multi" in variants and set(langs) <= {inter.source_lang}:
        where = loc + (["languages"] if block.languages else ["task"])
        raise spec.error(where, f"the multi variant needs train data in a language besides {inter.source_lang!r} "
                         f"(task {block.task!r} has {', '.join(inter.train_languages)})")  # fmt: skip
    fixed: dict[str, Any] = {"intermediate": block.settings().model_dump()}
    origin = {"intermediate": loc, "intermediate_variant": loc + ["variant"]}
    axes: dict[str, list[Any]] = {}
    if len(variants) > 1:
        axes["intermediate_variant"] = variants
    else:
        fixed["intermediate_variant"] = variants[0]
    return fixed, axes, origin
