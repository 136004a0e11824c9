"""XTREME's retrieval tasks, ``tatoeba`` and ``bucc2018``, as registered tasks of the retrieval head (no training:
the encoder of any method is evaluated, see ``xtuner.retrieval``).

Each language's table holds both sides (the language and English; ``schemas.RETRIEVAL_FEATURES``), so English
itself is the pivot and has no table of its own. Splits: tatoeba has one set, ``test`` (the hub calls it
validation); bucc2018 has ``validation`` (BUCC's sample part, XTREME's dev: the threshold is chosen there) and
``test`` (BUCC's training part, XTREME's test). Sources, as for the other tasks (``sources.resolve_source``):

- xtreme: an XTREME ``download/`` folder (``tatoeba/``, ``bucc2018/``); its Tatoeba English files are sorted and
  its BUCC test gold deleted, so those are refused with the way out (``retrieval_files``);
- release: LASER's ``tatoeba.<l3>-eng.{<l3>,eng}`` (also under ``LASER-master/data/tatoeba/v1/``), or the BUCC
  archives unpacked (``bucc2018/<l>-en/<l>-en.{sample,training}.{<l>,en,gold}``);
- hub: google/xtreme ``tatoeba.<l3>`` and ``bucc18.<l>`` (the latter holds only the gold pairs);
- local: ``<data_dir>/<task>/<split>-<lang>.parquet`` (or a save_to_disk folder) in the retrieval schema or a
  hub schema above.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset

from xtuner.errors import XtunerError
from xtuner.metrics.retrieval import bucc_f1, retrieval_accuracy
from xtuner.tasks import register_task
from xtuner.tasks.base import HeadType, LoadContext, Task
from xtuner.tasks.schemas import RETRIEVAL_FEATURES
from xtuner.tasks.xtreme import retrieval_files as rf
from xtuner.tasks.xtreme.layout import XTREME
from xtuner.tasks.xtreme.sources import HubPart, fetch_hub, fetch_local, resolve_source

TATOEBA_LANGS = sorted([*rf.TATOEBA_CODES, "en"])
BUCC_LANGS = ["de", "en", "fr", "ru", "zh"]
RELEASE_MARKERS = {
    "tatoeba": ("tatoeba.*-eng.eng", "v1/tatoeba.*-eng.eng", "data/tatoeba/v1", "LASER-master", "LASER"),
    "bucc2018": ("*-en/*-en.sample.en", "*-en/*-en.training.en", "*-en.sample.en", "*-en.training.en"),
}


def check_pivot(task: str, split: str, lang: str, splits: tuple[str, ...]) -> None:
    """English has no table of its own; a split the task does not have is an error that says which it has."""
    if lang == "en":
        raise XtunerError(f"task {task!r}: English is the pivot of every language pair; each language's {split} "
                          "table holds its English side, so load a non-English language")  # fmt: skip
    if split not in splits:
        raise XtunerError(f"task {task!r} has no {split} data (no training: it evaluates an encoder); its splits: "
                          f"{', '.join(splits)}")  # fmt: skip


@dataclass(frozen=True)
class RetrievalLoader:
    task: str  # "tatoeba" | "bucc2018"
    splits: tuple[str, ...]

    def __call__(self, split: str, lang: str, ctx: LoadContext) -> Dataset:
        check_pivot(self.task, split, lang, self.splits)
        source = resolve_source(self.task, (self.task,), ctx, RELEASE_MARKERS[self.task])
        if source in ("xtreme", "release"):
            rows = self._files(split, lang, Path(ctx.data_dir or "."))
        elif source == "local":
            ds, where = fetch_local(self.task, split, lang, ctx)
            if set(ds.column_names) == set(RETRIEVAL_FEATURES):
                return ds.cast(RETRIEVAL_FEATURES).select_columns(list(RETRIEVAL_FEATURES))
            rows = self._hub_rows(lang, ds.to_dict(), where)
        else:
            part = self.hub_part(split, lang)
            rows = self._hub_rows(lang, fetch_hub(part, ctx).to_dict(), part.describe())
        return Dataset.from_dict(rows, features=RETRIEVAL_FEATURES)

    def hub_part(self, split: str, lang: str) -> HubPart:
        if self.task == "tatoeba":
            return HubPart(XTREME, f"tatoeba.{rf.TATOEBA_CODES[lang]}", "validation")
        return HubPart(XTREME, f"bucc18.{lang}", split)

    def _files(self, split: str, lang: str, root: Path) -> dict[str, list]:
        if self.task == "tatoeba":
            other, english, xtreme_layout = rf.tatoeba_files(root, lang)
            return rf.read_tatoeba(lang, other, english, xtreme_layout=xtreme_layout)
        return rf.read_bucc(lang, split, root)[0]

    def _hub_rows(self, lang: str, table: dict[str, list], where: str) -> dict[str, list]:
        if self.task == "tatoeba":
            return rf.hub_tatoeba_rows(lang, table, where)
        return rf.hub_bucc_rows(lang, table, where)

    def data_key(self, split: str, lang: str, ctx: LoadContext) -> str | None:
        return None  # retrieval data is read whole at evaluation; it is never tokenised into the cache


def _task(name: str, family: str, languages: list[str], splits: tuple[str, ...], metric, main: str,
          description: str, no_dev_eval: str = "") -> Task:  # fmt: skip
    loader = RetrievalLoader(name, splits)
    return register_task(
        Task(name=name, head=HeadType.RETRIEVAL, languages=tuple(languages), features=RETRIEVAL_FEATURES,
             loader=loader, metric=metric, main_metric=main, inputs=("sentence",), label_column="gold",
             family=family, description=description, data_key=loader.data_key, no_dev_eval=no_dev_eval)  # fmt: skip
    )


TATOEBA_NO_DEV_EVAL = (
    "Tatoeba has one set per language, its test set (LASER's tatoeba.<l3>-eng files); there is no dev set: use "
    "eval_split test (see docs/data.md)"
)
TATOEBA = _task(
    "tatoeba", "tatoeba", TATOEBA_LANGS, ("test",), retrieval_accuracy, "accuracy",
    "Tatoeba: sentence retrieval, each English sentence finds its translation among ~1,000 (XTREME's 36 "
    "languages); nearest-neighbour accuracy on mean-pooled middle-layer states, no training.",
    TATOEBA_NO_DEV_EVAL,
)  # fmt: skip
BUCC2018 = _task(
    "bucc2018", "bucc", BUCC_LANGS, ("validation", "test"), bucc_f1, "f1",
    "BUCC 2018: parallel sentence mining in comparable corpora (de fr ru zh to en); margin-scored candidates, "
    "threshold chosen on the sample (dev) gold, F1 on test; no training.",
)  # fmt: skip
