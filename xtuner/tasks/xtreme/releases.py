"""The labelled original releases, for the splits whose labels XTREME's download folder strips (source ``release``).

A release folder is the unpacked download of the original dataset; the task's files are looked up directly in it
or one level down, under the archive's own top folder:

- xnli: XNLI-1.0.zip -> ``XNLI-1.0/xnli.{dev,test}.tsv`` (UTF-8 TSV with a header row, no quoting; columns
  ``language gold_label sentence1_binary_parse sentence2_binary_parse sentence1_parse sentence2_parse sentence1
  sentence2 promptID pairID genre label1..label5 sentence1_tokenized sentence2_tokenized match``; rows of all 15
  languages; read by column name). Train: XNLI-MT-1.0.zip -> ``XNLI-MT-1.0/multinli/multinli.train.<lang>.tsv``
  (header ``premise hypo label``, label "contradictory" for contradiction).
- pawsx: x-final.tar.gz -> ``x-final/<lang>/{dev_2k,test_2k}.tsv``, train ``x-final/en/train.tsv`` (other
  languages: ``translated_train.tsv``); header ``id sentence1 sentence2 label``, labels 0/1, no quoting.
- tydiqa: ``tydiqa-goldp-v1.1-dev.json`` (all languages in one SQuAD-format file; question ids
  ``<language>-<number>-<n>``, e.g. ``arabic-...``) or the unpacked ``tydiqa-goldp-v1.1-dev.tgz``
  (``tydiqa-goldp-v1.1-dev/tydiqa-goldp-dev-<language>.json``) as test; ``tydiqa-goldp-v1.1-train.json`` as train.
- xquad: github.com/deepmind/xquad -> ``xquad.<lang>.json`` (test only).
- mlqa: MLQA_V1.zip -> ``MLQA_V1/{dev,test}/{dev,test}-context-<lang>-question-<lang>.json`` (no train).

No quoting: these files are read line by line and split on tabs, as XTREME's own preprocessing and the Hugging
Face loaders (``csv.QUOTE_NONE``) do, so a sentence that starts with a quote character stays as it is.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xtuner.errors import XtunerError
from xtuner.tasks.xtreme.layout import TYDIQA_NAMES
from xtuner.tasks.xtreme.readers import LABEL_ALIASES, not_utf8
from xtuner.tasks.xtreme.sources import FilePart


@dataclass(frozen=True)
class ReleasePart:
    part: FilePart
    reader: str  # a READERS key
    kwargs: dict[str, Any] = field(default_factory=dict)


ReleaseMap = Callable[[str, str, Path], ReleasePart]  # (split, lang, release folder) -> ReleasePart


def _in(root: Path, top: str, *rel: str) -> tuple[tuple[Path, str], ...]:
    """The file directly under `root`, then under the archive's top folder `top`."""
    return ((root.joinpath(*rel), ""), (root.joinpath(top, *rel), ""))


def _none(task: str, split: str, what: str) -> XtunerError:
    return XtunerError(f"task {task!r}: the original release has no {split} data ({what})")


def xnli_release(split: str, lang: str, root: Path) -> ReleasePart:
    if split == "train":
        cands = _in(root, "XNLI-MT-1.0", "multinli", f"multinli.train.{lang}.tsv")
        return ReleasePart(FilePart(cands), "multinli")
    name = "xnli.test.tsv" if split == "test" else "xnli.dev.tsv"
    return ReleasePart(FilePart(_in(root, "XNLI-1.0", name)), "xnli_release", {"lang": lang})


def pawsx_release(split: str, lang: str, root: Path) -> ReleasePart:
    train = "train.tsv" if lang == "en" else "translated_train.tsv"
    name = {"train": train, "validation": "dev_2k.tsv", "test": "test_2k.tsv"}[split]
    skip = split == "train" and lang != "en"  # translated_train.tsv marks some pairs -1: dropped
    return ReleasePart(FilePart(_in(root, "x-final", lang, name)), "pawsx_release", {"skip_unlabelled": skip})


def tydiqa_release(split: str, lang: str, root: Path) -> ReleasePart:
    name = TYDIQA_NAMES[lang]
    if split == "validation":
        raise _none(
            "tydiqa", split, "its English selection set is SQuAD v1.1 dev: take validation_data from an XTREME "
            "folder (squad/dev-v1.1.json) or the hub; TyDiQA-GoldP dev is the test set"
        )
    if split == "train":
        return ReleasePart(FilePart(((root / "tydiqa-goldp-v1.1-train.json", name),)), "squad")
    cands = ((root / "tydiqa-goldp-v1.1-dev.json", name),
             (root / "tydiqa-goldp-v1.1-dev" / f"tydiqa-goldp-dev-{name}.json", ""))  # fmt: skip
    return ReleasePart(FilePart(cands), "squad")


def xquad_release(split: str, lang: str, root: Path) -> ReleasePart:
    if split != "test":
        raise _none("xquad", split, "XQuAD is a test set only; train and dev are SQuAD v1.1")
    return ReleasePart(FilePart(_in(root, "xquad", f"xquad.{lang}.json")), "squad")


def mlqa_release(split: str, lang: str, root: Path) -> ReleasePart:
    if split == "train":
        raise _none("mlqa", split, "MLQA trains on SQuAD v1.1")
    name = "test" if split == "test" else "dev"
    return ReleasePart(FilePart(_in(root, "MLQA_V1", name, f"{name}-context-{lang}-question-{lang}.json")), "squad")


RELEASES: dict[str, ReleaseMap] = {
    "xnli": xnli_release, "pawsx": pawsx_release, "tydiqa": tydiqa_release, "xquad": xquad_release,
    "mlqa": mlqa_release,
}  # fmt: skip
# names (globs) whose presence in a folder marks it as a task's release (checked after the XTREME layout)
RELEASE_MARKERS: dict[str, tuple[str, ...]] = {
    "xnli": ("xnli.test.tsv", "xnli.dev.tsv", "XNLI-1.0", "XNLI-MT-1.0", "multinli"),
    "pawsx": ("x-final", "*/test_2k.tsv", "*/dev_2k.tsv"),
    "tydiqa": ("tydiqa-goldp-v1.1-dev.json", "tydiqa-goldp-v1.1-train.json", "tydiqa-goldp-v1.1-dev"),
    "xquad": ("xquad.*.json",),
    "mlqa": ("MLQA_V1", "test/test-context-*.json", "dev/dev-context-*.json"),
}


# ------------------------------------------------------------------------------------------------ readers
def _rows(path: str, required: tuple[str, ...], what: str) -> Iterator[tuple[dict[str, str], str]]:
    """(row by column name, "file:line") of a headed TSV without quoting; checks the header and field counts."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None) or []
            missing = [c for c in required if c not in header]
            if missing:
                raise XtunerError(
                    f"{path}: not {what}: the header row lacks {missing} (found {header[:8]}); expected columns "
                    f"{list(required)}"
                )
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if not row:
                    continue
                if len(row) != len(header):
                    raise XtunerError(f"{where}: malformed line: {len(row)} fields, the header has {len(header)}")
                yield dict(zip(header, row, strict=True)), where
    except UnicodeDecodeError:
        raise not_utf8(path) from None


def _label(value: str, labels: tuple[str, ...], where: str) -> int:
    name = LABEL_ALIASES.get(value.strip(), value.strip())
    if not name:
        raise XtunerError(f"{where}: no label")
    if name not in labels:
        raise XtunerError(f"{where}: label {value!r} is not one of the task's labels {list(labels)}")
    return labels.index(name)


def read_xnli_release(path: str, stamp: str, lang: str, labels: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """XNLI 1.0 ``xnli.{dev,test}.tsv``: the rows whose ``language`` is `lang`."""
    n = 0
    cols = ("language", "gold_label", "sentence1", "sentence2")
    for row, where in _rows(path, cols, "an XNLI 1.0 file"):
        if row["language"] == lang:
            n += 1
            yield {"premise": row["sentence1"], "hypothesis": row["sentence2"],
                   "label": _label(row["gold_label"], labels, where)}  # fmt: skip
    if n == 0:
        raise XtunerError(f"{path}: no rows with language {lang!r}")


def read_multinli(path: str, stamp: str, labels: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """XNLI-MT 1.0 ``multinli.train.<lang>.tsv`` (premise, hypo, label)."""
    n = 0
    for row, where in _rows(path, ("premise", "hypo", "label"), "an XNLI-MT 1.0 train file"):
        n += 1
        yield {"premise": row["premise"], "hypothesis": row["hypo"], "label": _label(row["label"], labels, where)}
    if n == 0:
        raise XtunerError(f"{path}: no examples in the file")


def read_pawsx_release(
    path: str, stamp: str, labels: tuple[str, ...], skip_unlabelled: bool = False
) -> Iterator[dict[str, Any]]:
    """PAWS-X ``x-final/<lang>/*.tsv`` (id, sentence1, sentence2, label); `skip_unlabelled` drops label -1 rows."""
    n = 0
    for row, where in _rows(path, ("id", "sentence1", "sentence2", "label"), "a PAWS-X file"):
        if skip_unlabelled and row["label"].strip() == "-1":
            continue
        try:
            pid = int(row["id"])
        except ValueError:
            raise XtunerError(f"{where}: id {row['id']!r} is not a number") from None
        n += 1
        yield {"id": pid, "sentence1": row["sentence1"], "sentence2": row["sentence2"],
               "label": _label(row["label"], labels, where)}  # fmt: skip
    if n == 0:
        raise XtunerError(f"{path}: no examples in the file")


RELEASE_READERS = {"xnli_release": read_xnli_release, "multinli": read_multinli, "pawsx_release": read_pawsx_release}
