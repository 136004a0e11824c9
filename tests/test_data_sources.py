"""Per-split sources and the labelled original releases: small hand-written files in each real layout
(tests/fixtures/releases/: XNLI-1.0 + XNLI-MT-1.0, PAWS-X x-final/, tydiqa-goldp-v1.1-dev.json, XQuAD, MLQA_V1),
an XTREME download folder whose test files are label-stripped as XTREME's script leaves them, the hub through a
local mirror, `eval_split`, and the errors for bad answers, non-UTF-8 text and broken parquet files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from datasets import Dataset

from xtuner.errors import XtunerError
from xtuner.tasks import LoadContext, get_task, parse_split_source
from xtuner.tasks.schemas import NLI_LABELS
from xtuner.tasks.xtreme.prepare import Job, prepare_jobs

FIXTURES = Path(__file__).parent / "fixtures"
RELEASES = FIXTURES / "releases"
DOWNLOAD = FIXTURES / "xtreme" / "download"
UNLABELED = FIXTURES / "xtreme" / "unlabeled"


def strip_qa(src: Path, dest: Path) -> None:
    """What XTREME's remove_qa_test_annotations writes: one paragraph per question, answers [{0, ""}]."""
    data = json.loads(src.read_text(encoding="utf-8"))
    out = [{"paragraphs": [{"context": p["context"], "qas": [{"answers": [{"answer_start": 0, "text": ""}],
            "question": q["question"], "id": q["id"]}]}]}
           for a in data["data"] for p in a["paragraphs"] for q in p["qas"]]  # fmt: skip
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"data": out, "version": data.get("version", "1.1")}))


@pytest.fixture
def stripped(tmp_path: Path) -> Path:
    """An XTREME download folder as the script leaves it: labelled train/dev, label-stripped test files (and
    TyDiQA-GoldP dev)."""
    root = tmp_path / "download"
    for task in ("xnli", "pawsx", "squad", "tydiqa"):
        shutil.copytree(DOWNLOAD / task, root / task)
    shutil.copy(UNLABELED / "xnli" / "test-de.tsv", root / "xnli" / "test-de.tsv")
    (root / "pawsx" / "test-de.tsv").write_bytes(b"Sie lebt in Bonn.\tSie wohnt in Bonn.\r\n")
    dev = root / "tydiqa" / "tydiqa-goldp-v1.1-dev"
    for f in dev.iterdir():
        strip_qa(f, f)
    return root


def ctx_for(tmp_path: Path, data_dir: Path | None = None, **splits: str) -> LoadContext:
    return LoadContext(data_dir=data_dir, cache_dir=tmp_path / "cache", splits=splits)


# ------------------------------------------------------------------------------------------------ releases
def test_xnli_release_reads_by_column_name_per_language(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, RELEASES)  # detected as xnli's release (XNLI-1.0/, XNLI-MT-1.0/)
    de = get_task("xnli").load("test", "de", ctx)
    assert de["premise"] == ["Ein Mann liest ein Buch.", "Die Tür ist offen.", '"Ja", sagte er.']  # quotes kept
    assert [NLI_LABELS[i] for i in de["label"]] == ["entailment", "contradiction", "neutral"]
    assert get_task("xnli").load("validation", "en", ctx)["hypothesis"] == ["She sings well."]
    train = get_task("xnli").load("train", "en", ctx)  # XNLI-MT-1.0/multinli/multinli.train.en.tsv
    assert train[2] == {"premise": 'He said "no" and left .', "hypothesis": "He agreed .", "label": 2}
    with pytest.raises(XtunerError, match=r"xnli.test.tsv: no rows with language 'ar'"):
        get_task("xnli").load("test", "ar", ctx)


def test_pawsx_tydiqa_xquad_mlqa_releases(tmp_path: Path) -> None:
    ctx = ctx_for(tmp_path, RELEASES)
    px = get_task("pawsx").load("test", "de", ctx)  # x-final/de/test_2k.tsv, ids from the file
    assert (px["id"], px["label"]) == ([1, 2], [1, 0])
    assert px[0]["sentence1"] == '"Die Zeit" erschien 1946 zum ersten Mal.'
    assert get_task("pawsx").load("train", "en", ctx)["sentence1"] == ["A is B.", "C was born in D."]
    ty = get_task("tydiqa")
    assert ty.load("test", "ar", ctx)["id"] == ["arabic-2387335860751143628-1"]  # the combined GoldP dev file
    en = ty.load("test", "en", ctx)[0]
    assert (en["title"], en["answers"]["text"]) == ("Oslo", ["Oslo", "Oslo"])
    with pytest.raises(XtunerError, match="English selection set is SQuAD v1.1 dev"):
        ty.load("validation", "en", ctx)
    assert get_task("xquad").load("test", "de", ctx)["answers"][0]["text"] == ["Levi's Stadium"]
    assert get_task("mlqa").load("test", "zh", ctx)["id"] == ["a3c5e8f1d"]
    with pytest.raises(XtunerError, match="has no reader for its original release.*test_data: hub"):
        get_task("udpos").load("test", "de", ctx_for(tmp_path, data_dir=RELEASES, test="release:" + str(RELEASES)))


def test_release_files_with_the_wrong_header_or_fields_name_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "XNLI-1.0"
    root.mkdir()
    path = root / "xnli.test.tsv"
    path.write_text("lang\tlabel\ts1\ts2\nde\tneutral\ta\tb\n")
    ctx = ctx_for(tmp_path, tmp_path)
    with pytest.raises(XtunerError, match=r"not an XNLI 1.0 file: the header row lacks \['language'"):
        get_task("xnli").load("test", "de", ctx)
    header = (RELEASES / "XNLI-1.0" / "xnli.test.tsv").read_text().splitlines()[0]
    path.write_text(f"{header}\nde\tneutral\tonly three\tfields\n")
    with pytest.raises(XtunerError, match=rf"{re.escape(str(path))}:2: malformed line: 4 fields, the header has 19"):
        get_task("xnli").load("test", "de", ctx)


# ------------------------------------------------------------------------------------------------ per-split sources
def test_labelled_test_from_another_source_with_train_and_dev_from_xtreme(stripped: Path, tmp_path: Path) -> None:
    with pytest.raises(XtunerError, match="strips the labels.*test_data: hub.*eval_split: validation"):
        get_task("xnli").load("test", "de", ctx_for(tmp_path, stripped))
    ctx = ctx_for(tmp_path, stripped, test=f"release:{RELEASES}")
    out = prepare_jobs([Job("xnli", ctx, ("de", "en")), Job("pawsx", ctx_for(tmp_path, stripped, test=str(RELEASES)),
                                                              ("de",))])  # fmt: skip
    assert [(t.name, split, lang, n) for t, split, lang, n in out] == [
        ("xnli", "train", "en", 6), ("xnli", "validation", "en", 3), ("xnli", "test", "de", 3),
        ("xnli", "test", "en", 2), ("pawsx", "train", "en", 6), ("pawsx", "validation", "en", 2),
        ("pawsx", "test", "de", 2),
    ]  # fmt: skip
    # train from the XTREME folder, test from the release: different files, different cache keys
    xnli = get_task("xnli")
    assert "source=xtreme" in xnli.raw_data_key("train", "en", ctx)
    assert "source=release" in xnli.raw_data_key("test", "de", ctx)
    # TyDiQA-GoldP: XTREME strips its dev (the test set); selection is on SQuAD v1.1 dev from the same folder
    with pytest.raises(XtunerError, match="has no gold answers.*strips the labels"):
        get_task("tydiqa").load("test", "ar", ctx_for(tmp_path, stripped))
    ty = prepare_jobs([Job("tydiqa", ctx_for(tmp_path, stripped, test=f"release:{RELEASES}"), ("ar", "en"))])
    assert [(s, lang, n) for _, s, lang, n in ty] == [("train", "en", 3), ("validation", "en", 3), ("test", "ar", 1),
                                                      ("test", "en", 1)]  # fmt: skip


def test_eval_split_validation_reads_only_dev_sets(stripped: Path, tmp_path: Path) -> None:
    out = prepare_jobs([Job("xnli", ctx_for(tmp_path, stripped), ("de", "en"), "validation")])
    assert [(s, lang) for _, s, lang, _ in out] == [("train", "en"), ("validation", "en"), ("validation", "de")]
    with pytest.raises(XtunerError, match=r"eval_split 'validation' is not possible for task 'tydiqa': .*no dev set "
                       r"apart from the test set"):  # refused before anything loads
        prepare_jobs([Job("tydiqa", ctx_for(tmp_path, stripped), ("ar",), "validation")])


def test_test_split_from_the_hub_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    Dataset.from_dict({"tokens": [["Rom", "ist", "alt"]], "ner_tags": [[5, 0, 0]], "langs": [["it"] * 3]}).to_parquet(
        str(mirror / "google" / "xtreme" / "PAN-X.it" / "test-00000-of-00001.parquet")
    )
    ctx = LoadContext(data_dir=DOWNLOAD, cache_dir=tmp_path / "c", options={"hub_mirror": str(mirror)},
                      splits={"test": "hub"})  # fmt: skip
    assert get_task("panx").load("test", "it", ctx)["tokens"] == [["Rom", "ist", "alt"]]
    assert get_task("panx").load("train", "en", ctx).num_rows == 4  # still the XTREME folder
    assert "source=hub" in get_task("panx").raw_data_key("test", "it", ctx)


def test_a_named_split_source_wins_over_the_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XTUNER_DATA_SOURCE", "hub")
    ctx = ctx_for(tmp_path, None, test=str(RELEASES))  # a folder is detected from itself, not from the env
    assert get_task("xquad").load("test", "de", ctx).num_rows == 1


def test_parse_split_source() -> None:
    assert parse_split_source("hub") == ("hub", None)
    assert parse_split_source("release:/data/XNLI-1.0") == ("release", Path("/data/XNLI-1.0"))
    assert parse_split_source("/data/download") == (None, Path("/data/download"))
    with pytest.raises(XtunerError, match=r"unknown data source kind 'relase' \(did you mean 'release'\?\)"):
        parse_split_source("relase:/x")
    with pytest.raises(XtunerError, match="give a folder after 'local:'"):
        parse_split_source("local:")


# ------------------------------------------------------------------------------------------------ bad data
@pytest.mark.parametrize("start", [99999, -5, 3])
def test_qa_answers_must_match_their_context(start: int, tmp_path: Path) -> None:
    squad = tmp_path / "squad"
    squad.mkdir()
    qa = {"id": "q1", "question": "Where?", "answers": [{"answer_start": start, "text": "Paris"}]}
    good = {"id": "q0", "question": "What?", "answers": [{"answer_start": 0, "text": "Paris"}]}
    (squad / "dev-v1.1.json").write_text(json.dumps(
        {"data": [{"title": "t", "paragraphs": [{"context": "Paris is in France.", "qas": [good, qa]}]}]}
    ))  # fmt: skip
    path = squad / "dev-v1.1.json"
    with pytest.raises(XtunerError, match=rf"{re.escape(str(path))} row 1 \(question 'q1'.*answer_start {start} "
                                          r"does not match its context"):  # fmt: skip
        get_task("xquad").load("validation", "en", ctx_for(tmp_path, tmp_path))
    rows = {"id": ["a"], "title": ["t"], "context": ["Paris is in France."], "question": ["Where?"],
            "answers": [{"text": ["Paris"], "answer_start": [start]}]}  # fmt: skip
    Dataset.from_dict(rows).to_parquet(str(tmp_path / "local" / "mlqa" / "test-de.parquet"))
    with pytest.raises(XtunerError, match=r"test-de.parquet row 0: answer 0 'Paris' at answer_start"):
        get_task("mlqa").load("test", "de", ctx_for(tmp_path, tmp_path / "local"))


def test_non_utf8_files_and_broken_parquet_name_the_file(tmp_path: Path) -> None:
    root = tmp_path / "dl"
    (root / "xnli").mkdir(parents=True)
    tsv = root / "xnli" / "dev-en.tsv"
    tsv.write_bytes(b"a\tb\tneutral\r\n" + "Café\tb\tneutral\r\n".encode("latin-1"))
    ctx = ctx_for(tmp_path, root)
    with pytest.raises(XtunerError, match=rf"{re.escape(str(tsv))}:2: not UTF-8 text \(byte 0xe9"):
        get_task("xnli").load("validation", "en", ctx)
    (root / "udpos").mkdir()
    (root / "udpos" / "dev-en.tsv").write_bytes("Der\tDET\nKäse\tNOUN\n".encode("latin-1"))
    with pytest.raises(XtunerError, match=r"udpos/dev-en.tsv:2: not UTF-8 text"):
        get_task("udpos").load("validation", "en", ctx)
    (root / "squad").mkdir()
    (root / "squad" / "dev-v1.1.json").write_bytes('{"data": [], "t": "é"}'.encode("utf-16"))
    with pytest.raises(XtunerError, match=r"squad/dev-v1.1.json:1: not UTF-8 text"):
        get_task("xquad").load("validation", "en", ctx)
    local = tmp_path / "local" / "panx"
    local.mkdir(parents=True)
    (local / "test-de.parquet").write_bytes(b"PAR1 but not really parquet")
    (local / "test-fr.parquet").write_bytes(b"")
    ctx = ctx_for(tmp_path, tmp_path / "local")
    with pytest.raises(XtunerError, match=r"test-de.parquet: not a readable parquet file \(ArrowInvalid"):
        get_task("panx").load("test", "de", ctx)
    with pytest.raises(XtunerError, match=r"test-fr.parquet: not a readable parquet file .*0 bytes"):
        get_task("panx").load("test", "fr", ctx)
