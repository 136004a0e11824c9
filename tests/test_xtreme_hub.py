"""The hub source through a local mirror (parquet files with the hub repos' exact schemas and layouts), the local
parquet/save_to_disk source, and `prepare`. The mirror goes through the same fetch-filter-normalise code as the
hub; only ``datasets.load_dataset(repo, config)`` is swapped for the mirror's parquet files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

from xtuner.errors import XtunerError
from xtuner.tasks import LoadContext, get_task
from xtuner.tasks.schemas import NLI_LABELS, PANX_TAGS, PAWSX_LABELS, UPOS_TAGS
from xtuner.tasks.xtreme.prepare import prepare

DOWNLOAD = Path(__file__).parent / "fixtures" / "xtreme" / "download"
S = Value("string")
XTREME_QA = Features(  # google/xtreme SQuAD / MLQA / tydiqa (answers: answer_start first, as on the hub)
    {
        "id": S,
        "title": S,
        "context": S,
        "question": S,
        "answers": {"answer_start": List(Value("int32")), "text": List(S)},
    }
)
XQUAD_QA = Features({k: v for k, v in XTREME_QA.items() if k != "title"})  # google/xtreme XQuAD.*: no title


def _put(path: Path, rows: dict[str, list], features: Features) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(rows, features=features).to_parquet(str(path))


def _qa(
    ids: list[str], answers: list[str], context: str = "Paris is in France and Rome is in Italy."
) -> dict:
    return {
        "id": ids,
        "title": ["T"] * len(ids),
        "context": [context] * len(ids),
        "question": [f"q{i}" for i in range(len(ids))],
        "answers": [{"answer_start": [context.find(a)], "text": [a]} for a in answers],
    }


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    x = root / "google" / "xtreme"
    xnli = Features({"language": S, "sentence1": S, "sentence2": S, "gold_label": S})
    _put(
        x / "XNLI" / "test-00000-of-00001.parquet",
        {
            "language": ["en", "de", "de", "de"],
            "sentence1": ["A man sleeps.", "Ein Mann schläft.", "Es regnet.", "Sie lacht."],
            "sentence2": ["A man rests.", "Ein Mann ruht.", "Es ist trocken.", "Sie ist froh."],
            "gold_label": ["entailment", "entailment", "contradictory", "neutral"],
        },
        xnli,
    )
    nli = Features({"premise": S, "hypothesis": S, "label": ClassLabel(names=list(NLI_LABELS))})
    _put(
        root / "facebook" / "xnli" / "en" / "train-00000-of-00001.parquet",
        {"premise": ["p1", "p2"], "hypothesis": ["h1", "h2"], "label": [2, 0]},
        nli,
    )
    _put(
        root / "facebook" / "xnli" / "de" / "test-00000-of-00001.parquet",
        {"premise": ["Ein Hund bellt."], "hypothesis": ["Ein Tier ist laut."], "label": [0]},
        nli,
    )
    _put(
        x / "PAWS-X.en" / "train-00000-of-00001.parquet",
        {"sentence1": ["a b", "c d", "e f"], "sentence2": ["b a", "d c", "f e"], "label": ["1", "0", "1"]},
        Features({"sentence1": S, "sentence2": S, "label": S}),
    )
    _put(  # refs/convert/parquet layout: <config>/<split>/0000.parquet
        root / "google-research-datasets" / "paws-x" / "de" / "test" / "0000.parquet",
        {"id": [11, 12], "sentence1": ["x", "y"], "sentence2": ["x2", "y2"], "label": [0, 1]},
        Features(
            {
                "id": Value("int32"),
                "sentence1": S,
                "sentence2": S,
                "label": ClassLabel(names=list(PAWSX_LABELS)),
            }
        ),
    )
    _put(
        x / "udpos.German" / "test-00000-of-00001.parquet",
        {"tokens": [["Die", "Katze", "läuft"]], "pos_tags": [[5, 7, 15]]},
        Features({"tokens": List(S), "pos_tags": List(ClassLabel(names=list(UPOS_TAGS)))}),
    )
    _put(  # the same two sentences as the fixture's XTREME-format panx/test-de.tsv
        x / "PAN-X.de" / "test-00000-of-00001.parquet",
        {
            "tokens": [["Berlin", "ist", "groß"], ["Die", "Deutsche", "Bahn", "fährt"]],
            "ner_tags": [[5, 0, 0], [0, 3, 4, 0]],
            "langs": [["de"] * 3, ["de"] * 4],
        },
        Features({"tokens": List(S), "ner_tags": List(ClassLabel(names=list(PANX_TAGS))), "langs": List(S)}),
    )
    _put(x / "SQuAD" / "train-00000-of-00001.parquet", _qa(["s1", "s2"], ["Paris", "Italy"]), XTREME_QA)
    _put(x / "SQuAD" / "validation-00000-of-00001.parquet", _qa(["sd1"], ["Rome"]), XTREME_QA)
    xq = _qa(["x1"], ["Rom"], "Paris liegt in Frankreich und Rom in Italien.")
    del xq["title"]
    _put(x / "XQuAD.de" / "validation-00000-of-00001.parquet", xq, XQUAD_QA)
    _put(
        x / "MLQA.zh.zh" / "test-00000-of-00001.parquet",
        _qa(["m1"], ["北京"], "北京是中国的首都。"),
        XTREME_QA,
    )
    _put(
        x / "tydiqa" / "validation-00000-of-00001.parquet",
        _qa(
            ["english-1-0", "arabic-2-0", "english-3-0", "englishman-4-0"],
            ["Paris", "Rome", "France", "Italy"],
        ),
        XTREME_QA,
    )
    _put(x / "MLQA.en.en" / "test-00000-of-00001.parquet", _qa(["e1"], [""]), XTREME_QA)  # no gold answer
    _put(
        x / "XNLI" / "validation-00000-of-00001.parquet",
        {
            "language": ["en", "en"],
            "sentence1": ["a", "b"],
            "sentence2": ["c", "d"],
            "gold_label": ["neutral", "maybe"],
        },
        xnli,
    )
    return root


def _ctx(mirror: Path, tmp_path: Path, **options: Any) -> LoadContext:
    return LoadContext(cache_dir=tmp_path / "cache", options={"hub_mirror": str(mirror), **options})


def _exact(task: str, ds: Dataset) -> None:
    assert ds.features == get_task(task).features
    assert list(ds.features) == list(get_task(task).features)


def test_xnli_from_google_xtreme_filters_language_and_normalises_contradictory(
    mirror: Path, tmp_path: Path
) -> None:
    ds = get_task("xnli").load("test", "de", _ctx(mirror, tmp_path))
    _exact("xnli", ds)
    assert ds["premise"] == ["Ein Mann schläft.", "Es regnet.", "Sie lacht."]
    assert [NLI_LABELS[i] for i in ds["label"]] == ["entailment", "contradiction", "neutral"]
    train = get_task("xnli").load("train", "en", _ctx(mirror, tmp_path))  # MultiNLI en: facebook/xnli
    assert train.to_list() == [
        {"premise": "p1", "hypothesis": "h1", "label": 2},
        {"premise": "p2", "hypothesis": "h2", "label": 0},
    ]
    alt = get_task("xnli").load("test", "de", _ctx(mirror, tmp_path, hub_repo="facebook/xnli"))
    assert alt["premise"] == ["Ein Hund bellt."]


def test_hub_label_outside_the_task_labels(mirror: Path, tmp_path: Path) -> None:
    with pytest.raises(
        XtunerError, match=r"google/xtreme \[XNLI/validation\].* row 1: label 'maybe' is not one"
    ):
        get_task("xnli").load("validation", "en", _ctx(mirror, tmp_path))


def test_pawsx_string_labels_and_paws_x_repo(mirror: Path, tmp_path: Path) -> None:
    ds = get_task("pawsx").load("train", "en", _ctx(mirror, tmp_path))
    _exact("pawsx", ds)
    assert (ds["id"], ds["label"]) == ([0, 1, 2], [1, 0, 1])  # google/xtreme has no id: row position
    alt = get_task("pawsx").load(
        "test", "de", _ctx(mirror, tmp_path, hub_repo="google-research-datasets/paws-x")
    )
    assert (alt["id"], alt["label"], alt["sentence1"]) == ([11, 12], [0, 1], ["x", "y"])
    with pytest.raises(XtunerError, match=r"unknown hub_repo for task 'pawsx' 'google/paws'"):
        get_task("pawsx").load("test", "de", _ctx(mirror, tmp_path, hub_repo="google/paws"))


def test_tagging_configs(mirror: Path, tmp_path: Path) -> None:
    ud = get_task("udpos").load("test", "de", _ctx(mirror, tmp_path))  # config udpos.German
    _exact("udpos", ud)
    assert [UPOS_TAGS[i] for i in ud[0]["pos_tags"]] == ["DET", "NOUN", "VERB"]
    px = get_task("panx").load("test", "de", _ctx(mirror, tmp_path))
    _exact("panx", px)
    # the hub and the XTREME download folder give the same rows for the same data
    from_files = get_task("panx").load(
        "test", "de", LoadContext(data_dir=DOWNLOAD, cache_dir=tmp_path / "c2")
    )
    assert px.to_list() == from_files.to_list()


def test_qa_configs(mirror: Path, tmp_path: Path) -> None:
    ctx = _ctx(mirror, tmp_path)
    squad = get_task("xquad").load("train", "en", ctx)
    _exact("xquad", squad)
    assert squad[1]["answers"] == {"text": ["Italy"], "answer_start": [34]}
    xq = get_task("xquad").load("test", "de", ctx)
    assert (xq[0]["title"], xq[0]["answers"]["text"]) == ("", ["Rom"])  # XQuAD.* has no title column
    assert get_task("mlqa").load("test", "zh", ctx)["id"] == ["m1"]
    assert get_task("mlqa").load("train", "en", ctx)["id"] == ["s1", "s2"]  # SQuAD v1.1
    ty = get_task("tydiqa")
    assert ty.load("test", "en", ctx)["id"] == ["english-1-0", "english-3-0"]  # not "englishman-..."
    assert ty.load("test", "ar", ctx)["id"] == ["arabic-2-0"]
    assert ty.load("validation", "en", ctx)["id"] == ["sd1"]  # no GoldP en dev apart from test: SQuAD dev
    with pytest.raises(XtunerError, match="no validation data in 'ar'.*eval_split 'validation' is not possible"):
        ty.load("validation", "ar", ctx)
    with pytest.raises(
        XtunerError, match=r"google/xtreme \[MLQA.en.en/test\] row 0: question has no gold answer"
    ):
        get_task("mlqa").load("test", "en", ctx)


def test_mirror_missing_config_names_the_expected_path(mirror: Path, tmp_path: Path) -> None:
    expected = mirror / "google" / "xtreme" / "PAN-X.fr" / "test-*.parquet"
    with pytest.raises(
        XtunerError,
        match=rf"no parquet files for google/xtreme \[PAN-X.fr/test\].*{re.escape(str(expected))}",
    ):
        get_task("panx").load("test", "fr", _ctx(mirror, tmp_path))


def test_hub_unreachable_gives_one_clear_error(tmp_path: Path) -> None:
    code = (
        "from xtuner.tasks import get_task, LoadContext\n"
        "from xtuner.errors import XtunerError\n"
        f"try:\n    get_task('panx').load('test', 'de', LoadContext(cache_dir={str(tmp_path)!r}))\n"
        "except XtunerError as e:\n    print('XTUNER-ERROR', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "XTUNER_HUB_MIRROR": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "XTUNER-ERROR could not load google/xtreme [PAN-X.de/test] from the Hugging Face hub" in out.stdout
    assert "hub_mirror" in out.stdout


def test_local_parquet_and_save_to_disk_are_detected(tmp_path: Path) -> None:
    root = tmp_path / "data"
    # google/xtreme's XNLI schema (all languages in one table) as a local parquet file
    _put(
        root / "xnli" / "test-de.parquet",
        {
            "language": ["fr", "de"],
            "sentence1": ["r", "s"],
            "sentence2": ["u", "t"],
            "gold_label": ["neutral", "contradictory"],
        },
        Features({"language": S, "sentence1": S, "sentence2": S, "gold_label": S}),
    )
    ctx = LoadContext(data_dir=root, cache_dir=tmp_path / "cache")
    assert get_task("xnli").load("test", "de", ctx).to_list() == [
        {"premise": "s", "hypothesis": "t", "label": 2}
    ]
    # a ClassLabel in another order is mapped by name
    _put(
        root / "pawsx" / "test-de.parquet",
        {"sentence1": ["a"], "sentence2": ["b"], "label": [0]},
        Features({"sentence1": S, "sentence2": S, "label": ClassLabel(names=["1", "0"])}),
    )
    assert get_task("pawsx").load("test", "de", ctx).to_list() == [
        {"id": 0, "sentence1": "a", "sentence2": "b", "label": 1}
    ]
    # a Dataset.save_to_disk folder with string tags and no langs column
    Dataset.from_dict({"tokens": [["Rom", "ist", "alt"]], "ner_tags": [["B-LOC", "O", "O"]]}).save_to_disk(
        str(root / "panx" / "test-it")
    )
    px = get_task("panx").load("test", "it", ctx)
    _exact("panx", px)
    assert px[0] == {"tokens": ["Rom", "ist", "alt"], "ner_tags": [5, 0, 0], "langs": ["it"] * 3}
    # a saved DatasetDict per language
    tags = Features({"tokens": List(S), "pos_tags": List(ClassLabel(names=list(UPOS_TAGS)))})
    DatasetDict(
        {"test": Dataset.from_dict({"tokens": [["Io"]], "pos_tags": [[10]]}, features=tags)}
    ).save_to_disk(str(root / "udpos" / "it"))
    assert get_task("udpos").load("test", "it", ctx)["pos_tags"] == [[10]]
    with pytest.raises(XtunerError, match=r"no split 'validation' in the saved DatasetDict"):
        get_task("udpos").load("validation", "it", ctx)
    with pytest.raises(
        XtunerError, match=r"missing local data for task 'xnli' test/fr: expected .*test-fr.parquet"
    ):
        get_task("xnli").load("test", "fr", ctx)
    bad = root / "panx" / "test-de"
    Dataset.from_dict({"tokens": [["a", "b"]], "ner_tags": [["B-PER", "B-MISC"]]}).save_to_disk(str(bad))
    with pytest.raises(XtunerError, match=r"row 0: label 'B-MISC' is not one of the task's labels"):
        get_task("panx").load("test", "de", ctx)


def test_prepare_loads_every_needed_split_once(tmp_path: Path) -> None:
    ctx = LoadContext(data_dir=DOWNLOAD, cache_dir=tmp_path / "cache")
    out = prepare(["xnli", "panx", "xnli"], ctx, languages={"xnli": ["de"], "panx": ["en", "de"]})
    assert [(t.name, split, lang, n) for t, split, lang, n in out] == [
        ("panx", "train", "en", 4),
        ("panx", "validation", "en", 2),
        ("panx", "test", "de", 2),
        ("panx", "test", "en", 2),
        ("xnli", "train", "en", 6),
        ("xnli", "validation", "en", 3),
        ("xnli", "test", "de", 3),
    ]
    assert len(prepare(["mlqa"], ctx, languages={"mlqa": ["zh"]})) == 3


def test_prepare_reports_every_problem_together(tmp_path: Path) -> None:
    ctx = LoadContext(data_dir=DOWNLOAD, cache_dir=tmp_path / "cache")
    with pytest.raises(XtunerError) as err:
        prepare(["pawsx", "udpos"], ctx, languages={"pawsx": ["de", "fr"], "udpos": ["ja"]})
    msg = str(err.value)
    assert msg.startswith("2 of 7 splits failed to load")
    assert "pawsx test/fr: missing file" in msg and "udpos test/ja: missing file" in msg
    with pytest.raises(XtunerError, match=r"unknown task 'xnl' \(did you mean 'xnli'\?\)"):
        prepare(["xnl"], ctx)
    with pytest.raises(XtunerError, match=r"unknown task in the languages mapping 'panx'"):
        prepare(["xnli"], ctx, languages={"panx": ["de"]})
    with pytest.raises(XtunerError, match=r"unknown language 'xx'"):
        prepare(["xnli"], ctx, languages={"xnli": ["xx"]})
