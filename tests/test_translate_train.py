"""Translated training data for the multilingual intermediate variant, on fixtures in the real formats: XTREME's
translate-train files in a download folder (``<task>/translate-train/en-<lang>-translated.tsv``: 5 fields, no
quoting; ``squad/translate-train/squad.translate.train.en-<lang>.json``), PAWS-X's ``translated_train.tsv`` (pairs
marked -1 dropped), facebook/xnli's and google/xtreme's per-language train configs through a hub mirror; and a
stage-1 training set built from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, Features, Value

from xtuner.errors import XtunerError
from xtuner.intermediate.data import stage1_rows
from xtuner.tasks import LoadContext, get_task
from xtuner.tasks.schemas import NLI_LABELS

FIXTURES = Path(__file__).parent / "fixtures"
DOWNLOAD = FIXTURES / "xtreme" / "download"
RELEASES = FIXTURES / "releases"


def ctx(tmp_path: Path, data_dir: Path | None = None, **options) -> LoadContext:
    return LoadContext(data_dir=data_dir, cache_dir=tmp_path / "cache", options=options)


def test_xtreme_translate_train_pairs(tmp_path: Path) -> None:
    de = get_task("xnli").load("train", "de", ctx(tmp_path, DOWNLOAD))
    assert de["premise"] == [
        "Die Katze saß auf der Matte.",
        'Er sagte "nein" und ging.',
        "Das Museum öffnet um neun.",
    ]
    assert [NLI_LABELS[i] for i in de["label"]] == [
        "entailment",
        "contradiction",
        "neutral",
    ]  # "contradictory"
    px = get_task("pawsx").load("train", "de", ctx(tmp_path, DOWNLOAD))
    assert (px["id"], px["label"], px["sentence2"]) == ([0, 1], [1, 0], ["B ist A.", "D wurde in C geboren."])


def test_xtreme_translated_squad_skips_misaligned_answers(tmp_path: Path) -> None:
    for task in ("xquad", "mlqa"):
        de = get_task(task).load("train", "de", ctx(tmp_path, DOWNLOAD))
        assert de["id"] == ["sq-tr-1", "sq-tr-2"]  # sq-tr-3's answer is not at its answer_start
        assert de[1]["answers"]["text"] == ["Carl Wilhelm Scheele"]


def test_pawsx_release_translated_train_drops_unlabelled_pairs(tmp_path: Path) -> None:
    de = get_task("pawsx").load("train", "de", ctx(tmp_path, RELEASES))
    assert (de["id"], de["label"]) == ([1, 3], [1, 0])
    test = get_task("pawsx").load("test", "de", ctx(tmp_path, RELEASES))
    assert len(test) == 2  # test sets are never filtered


def test_hub_translated_train_sets(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    nli = Features({"premise": Value("string"), "hypothesis": Value("string"),
                    "label": ClassLabel(names=list(NLI_LABELS))})  # fmt: skip
    path = mirror / "facebook" / "xnli" / "fr" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    Dataset.from_dict(
        {"premise": ["Il pleut."], "hypothesis": ["Il fait sec."], "label": [2]}, nli
    ).to_parquet(str(path))
    path = mirror / "google" / "xtreme" / "PAWS-X.fr" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    rows = {"sentence1": ["a b", "c d", "e f"], "sentence2": ["b a", "", "f e"], "label": ["1", "-1", "0"]}
    Dataset.from_dict(rows).to_parquet(str(path))
    c = ctx(tmp_path, hub_mirror=str(mirror))
    fr = get_task("xnli").load("train", "fr", c)
    assert fr[0] == {"premise": "Il pleut.", "hypothesis": "Il fait sec.", "label": 2}
    px = get_task("pawsx").load("train", "fr", c)
    assert (px["sentence1"], px["label"]) == (["a b", "e f"], [1, 0])  # the -1 pair is dropped


def test_missing_translations_name_the_file_and_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(XtunerError, match=r"missing file .*xnli/translate-train/en-fr-translated.tsv; .*"
                       r"gs://xtreme_translations/XNLI/translate-train/en-fr-translated.tsv"):  # fmt: skip
        get_task("xnli").load("train", "fr", ctx(tmp_path, DOWNLOAD))
    with pytest.raises(XtunerError, match=r"squad.translate.train.en-es.json"):
        get_task("xquad").load("train", "es", ctx(tmp_path, DOWNLOAD))
    with pytest.raises(XtunerError, match=r"no train data in 'de'.*no machine-translated SQuAD"):
        get_task("xquad").load("train", "de", ctx(tmp_path, hub_mirror=str(tmp_path)))


def test_malformed_translation_line_names_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "download"
    (root / "xnli" / "translate-train").mkdir(parents=True)
    (root / "xnli" / "train-en.tsv").write_text("a\tb\tneutral\n")
    (root / "xnli" / "translate-train" / "en-de-translated.tsv").write_text(
        "a\tb\tA\tB\tneutral\na\tb\tA\tneutral\n"
    )
    with pytest.raises(XtunerError, match=r"en-de-translated.tsv:2: malformed line: 4 fields, expected 5"):
        get_task("xnli").load("train", "de", ctx(tmp_path, root))


def test_stage1_set_from_translations(tmp_path: Path) -> None:
    task = get_task("xnli")
    rows, counts = stage1_rows(task, ["de", "en"], budget="match_en", max_en=None, noise=0.0, seed=1,
                               ctx=ctx(tmp_path, DOWNLOAD))  # fmt: skip
    assert counts == {"de": 3, "en": 3}  # English's 6 pairs, split evenly
    assert len(rows) == 6 and rows.features == task.features
    assert (
        sum(p in ("Die Katze saß auf der Matte.", 'Er sagte "nein" und ging.') for p in rows["premise"]) >= 2
    )
    _, counts = stage1_rows(task, ["de", "en"], budget="all", max_en=None, noise=0.0, seed=1,
                            ctx=ctx(tmp_path, DOWNLOAD))  # fmt: skip
    assert counts == {"de": 3, "en": 6}
