"""The three data sources of the XTREME tasks, and how one is picked.

Picking (per task and split; ``LoadContext.for_split`` gives a split its own folder and source):
``LoadContext.options["source"]`` (or env ``XTUNER_DATA_SOURCE``) = "hub" | "xtreme" | "local" | "release" wins.
Otherwise: no ``data_dir`` -> hub; ``<data_dir>/<task>/`` holding parquet files or ``save_to_disk`` folders -> local;
``data_dir`` holding the task's XTREME folder (e.g. ``xnli/``, ``squad/``) -> xtreme; ``data_dir`` holding the
task's original release (``releases.RELEASE_MARKERS``, e.g. ``XNLI-1.0/``, ``x-final/``) -> release; else an error
that names the expected layouts.

- hub: ``datasets.load_dataset(repo, config, split=...)``. ``options["hub_mirror"]`` (or env
  ``XTUNER_HUB_MIRROR``) replaces the hub by a local folder with the repos' parquet layout,
  ``<mirror>/<owner>/<name>/<config>/<split>-*.parquet`` (hub main branch) or ``.../<config>/<split>/*.parquet``
  (``refs/convert/parquet``), e.g. from ``huggingface-cli download google/xtreme --repo-type dataset``; the rows
  then go through the very same filtering and normalisation.
- xtreme: files of an XTREME ``download/`` folder, parsed by ``readers`` via ``Dataset.from_generator`` (cached
  by datasets, keyed on the file's real path and content).
- release: the labelled original release files (``releases``), e.g. XNLI 1.0 ``xnli.test.tsv``.
- local: ``<data_dir>/<task>/<split>-<lang>.parquet`` (or ``<split>-<lang>-*.parquet``), a ``save_to_disk``
  folder ``<data_dir>/<task>/<split>-<lang>/``, or a saved DatasetDict ``<data_dir>/<task>/<lang>/`` holding the
  split; any hub schema ``normalise`` accepts. Parquet (here and in a hub mirror) is read with pyarrow, without
  datasets' builder cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, Features
from datasets.table import InMemoryTable

from xtuner.data.identity import file_identity
from xtuner.errors import XtunerError, unknown_name
from xtuner.tasks.base import LoadContext
from xtuner.tasks.xtreme.readers import read_squad

SOURCES = ("hub", "xtreme", "local", "release")
_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


@dataclass(frozen=True)
class HubPart:
    """One split of one hub config, optionally filtered to the rows of one language."""

    repo: str
    config: str
    split: str
    filter_column: str = ""  # "" = keep all rows
    filter_value: str = ""
    filter_prefix: bool = False  # keep rows whose column's first "-"-separated part equals filter_value

    def describe(self) -> str:
        keep = f" where {self.filter_column}={self.filter_value!r}" if self.filter_column else ""
        prefix = "-prefix" if self.filter_prefix else ""
        return f"{self.repo} [{self.config}/{self.split}]{keep.replace('=', prefix + '=')}"


@dataclass(frozen=True)
class FilePart:
    """Candidate files for one split of one language in an XTREME download folder (the first existing wins)."""

    candidates: tuple[tuple[Path, str], ...]  # (path, id_prefix for read_squad; "" = none)
    hint: str = ""  # appended to the missing-file error
    reader: str = ""  # a READERS key for this file instead of the task's own reader (e.g. glue_mnli)


def _option(ctx: LoadContext, key: str, env: str) -> Any:
    value = ctx.options.get(key)
    return value if value not in (None, "") else os.environ.get(env) or None


def hub_mirror(ctx: LoadContext) -> Path | None:
    value = _option(ctx, "hub_mirror", "XTUNER_HUB_MIRROR")
    return Path(value).expanduser() if value else None


def _cache(ctx: LoadContext) -> str | None:
    return str(ctx.cache_dir) if ctx.cache_dir else None


def _looks_local(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    if any(folder.glob("*.parquet")):
        return True
    return any((sub / m).is_file() for sub in folder.iterdir() if sub.is_dir() for m in _DISK_MARKERS)


def resolve_source(
    task: str, xtreme_markers: tuple[str, ...], ctx: LoadContext, release_markers: tuple[str, ...] = ()
) -> str:
    """The source one load uses (module doc). ``options["source"] == "auto"`` (a per-split folder) detects it
    from the folder alone, ignoring ``XTUNER_DATA_SOURCE``."""
    chosen = ctx.options.get("source") or None
    if chosen == "auto":
        chosen = None
    elif chosen is None:
        chosen = os.environ.get("XTUNER_DATA_SOURCE") or None
    if chosen:
        if chosen not in SOURCES:
            raise unknown_name("data source", chosen, SOURCES)
        if chosen != "hub" and ctx.data_dir is None:
            raise XtunerError(f"data source {chosen!r} needs a data_dir")
        return str(chosen)
    if ctx.data_dir is None:
        return "hub"
    root = Path(ctx.data_dir)
    if not root.is_dir():
        raise XtunerError(f"data_dir {root} does not exist or is not a directory")
    if _looks_local(root / task):
        return "local"
    if any((root / m).exists() for m in xtreme_markers):
        return "xtreme"
    if any(next(root.glob(m), None) is not None for m in release_markers):
        return "release"
    release = f", the original release ({', '.join(release_markers)})" if release_markers else ""
    raise XtunerError(
        f"no data for task {task!r} under data_dir {root}: expected an XTREME download folder "
        f"(one of {', '.join(str(root / m) for m in xtreme_markers)}){release} or local parquet/save_to_disk data "
        f"({root / task}/<split>-<lang>.parquet); set LoadContext.options source='hub' to use the hub"
    )


def _unwrap(e: BaseException) -> BaseException:
    seen = e
    while seen is not None:
        if isinstance(seen, XtunerError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return e


def mirror_files(part: HubPart, mirror: Path) -> list[Path]:
    """The parquet files of `part` in a hub mirror (raises naming the expected paths when there are none)."""
    base = mirror / part.repo / part.config
    files = sorted({*base.glob(f"{part.split}-*.parquet"), *base.glob(f"{part.split}/*.parquet")})
    if not files:
        raise XtunerError(
            f"hub mirror {mirror}: no parquet files for {part.describe()}; expected "
            f"{base}/{part.split}-*.parquet or {base}/{part.split}/*.parquet"
        )
    return files


def fetch_hub(part: HubPart, ctx: LoadContext) -> Dataset:
    mirror = hub_mirror(ctx)
    if mirror is not None:
        ds = read_parquet(mirror_files(part, mirror))
    else:
        try:
            ds = datasets.load_dataset(part.repo, part.config, split=part.split, cache_dir=_cache(ctx))
        except Exception as e:  # offline, unknown config/split, auth...: one clear message
            raise XtunerError(
                f"could not load {part.describe()} from the Hugging Face hub: {type(e).__name__}: {e}. "
                "Offline? Set LoadContext.options hub_mirror (env XTUNER_HUB_MIRROR) to a local copy, or point "
                "data_dir at an XTREME download folder"
            ) from e
    if part.filter_column:
        col, value, prefix = part.filter_column, part.filter_value, part.filter_prefix
        if col not in ds.column_names:
            raise XtunerError(f"{part.describe()}: no column {col!r} to select the language by")

        def keep(batch: dict[str, list]) -> list[bool]:
            if prefix:
                return [str(v).split("-")[0] == value for v in batch[col]]
            return [v == value for v in batch[col]]

        ds = ds.filter(keep, batched=True)
        if len(ds) == 0:
            raise XtunerError(f"{part.describe()}: no rows for this language")
    return ds


def first_file(part: FilePart) -> tuple[Path, str]:
    """The first existing candidate of `part` as (path, id_prefix); raises naming every candidate."""
    for path, prefix in part.candidates:
        if path.is_file():
            return path, prefix
    names = " or ".join(str(p) for p, _ in part.candidates)
    raise XtunerError(f"missing file {names}{'; ' + part.hint if part.hint else ''}")


def fetch_files(
    part: FilePart, reader: Callable[..., Iterator[dict[str, Any]]], reader_kwargs: dict[str, Any],
    features: Features, ctx: LoadContext,
) -> Dataset:
    """Parse the first existing candidate file with `reader` into an Arrow-cached Dataset. The datasets cache is
    keyed on the file's real path and content (`file_identity`), so a replaced file is parsed again."""
    path, id_prefix = first_file(part)
    kwargs = {"path": str(path.absolute()), "stamp": file_identity(path), **reader_kwargs}
    if reader is read_squad:
        kwargs["id_prefix"] = id_prefix
    try:
        return Dataset.from_generator(reader, features=features, gen_kwargs=kwargs, cache_dir=_cache(ctx))
    except Exception as e:
        inner = _unwrap(e)
        if inner is e:
            raise
        raise inner from None


@dataclass(frozen=True)
class LocalPart:
    """Where one split/language of a task lives under ``<data_dir>/<task>/``."""

    kind: str  # "parquet" (files), "disk" (a Dataset.save_to_disk folder) or "dict" (a saved DatasetDict)
    paths: tuple[Path, ...]
    where: str  # for messages
    split: str = ""  # the split inside a saved DatasetDict


def find_local(task: str, split: str, lang: str, ctx: LoadContext) -> LocalPart:
    assert ctx.data_dir is not None
    base = Path(ctx.data_dir) / task
    files = sorted({*base.glob(f"{split}-{lang}.parquet"), *base.glob(f"{split}-{lang}-*.parquet")})
    if files:
        where = str(files[0]) if len(files) == 1 else f"{base}/{split}-{lang}-*.parquet"
        return LocalPart("parquet", tuple(files), where)
    folder = base / f"{split}-{lang}"
    if folder.is_dir():
        return LocalPart("disk", (folder,), str(folder))
    folder = base / lang
    if (folder / "dataset_dict.json").is_file():
        return LocalPart("dict", (folder,), f"{folder}[{split}]", split)
    raise XtunerError(
        f"missing local data for task {task!r} {split}/{lang}: expected {base}/{split}-{lang}.parquet, "
        f"a save_to_disk folder {base}/{split}-{lang}/, or a saved DatasetDict {base}/{lang}/"
    )


def fetch_local(task: str, split: str, lang: str, ctx: LoadContext) -> tuple[Dataset, str]:
    """Load ``<data_dir>/<task>/`` data for one split/language; returns the dataset and its description."""
    part = find_local(task, split, lang, ctx)
    if part.kind == "parquet":
        return read_parquet(part.paths), part.where
    folder = part.paths[0]
    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as e:  # a damaged or foreign folder
        raise XtunerError(f"{folder}: not a readable save_to_disk folder: {type(e).__name__}: {e}") from None
    if part.kind == "disk":
        if isinstance(loaded, Dataset):
            return loaded, part.where
        raise XtunerError(f"{folder} holds a DatasetDict; expected one split saved with Dataset.save_to_disk")
    if not isinstance(loaded, datasets.DatasetDict) or split not in loaded:
        have = sorted(loaded) if isinstance(loaded, datasets.DatasetDict) else "one Dataset"
        raise XtunerError(f"{folder}: no split {split!r} in the saved DatasetDict (has {have})")
    return loaded[split], part.where


def read_parquet(paths: Sequence[Path]) -> Dataset:
    """Parquet files as one in-memory Dataset (features from the files' Hugging Face metadata). Read with pyarrow,
    not through datasets' builder cache, whose key is the file's path and mtime: a file replaced in the same
    second would be served from the old copy. A file that is not parquet raises an error naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in paths:
        try:
            tables.append(pq.read_table(path))
        except (pa.ArrowException, OSError) as e:
            raise XtunerError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from None
    try:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except pa.ArrowInvalid as e:
        raise XtunerError(f"parquet shards {paths[0]}...: their schemas differ ({e})") from None
    return Dataset(InMemoryTable(table))
