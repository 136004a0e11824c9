"""The XTREME tasks read from an XTREME ``download/`` folder: the fixtures in tests/fixtures/xtreme/ hold every
file format byte-exact (csv.writer TSV with CRLF and quoting, word/tag blocks, SQuAD JSON, MLQA and TyDiQA file
names), with labelled test files (``download/``) and XTREME's label-stripped test files (``unlabeled/``)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from xtuner.errors import XtunerError
from xtuner.tasks import LoadContext, get_task
from xtuner.tasks.schemas import NLI_LABELS, UPOS_TAGS

FIXTURES = Path(__file__).parent / "fixtures" / "xtreme"
DOWNLOAD = FIXTURES / "download"
TASK_LANGS = {
    "xnli": ["en", "de"],
    "pawsx": ["en", "de"],
    "udpos": ["en", "de"],
    "panx": ["en", "de"],
    "xquad": ["en", "de"],
    "mlqa": ["en", "zh"],
    "tydiqa": ["en", "ar"],
}


@pytest.fixture
def ctx(tmp_path: Path) -> LoadContext:
    return LoadContext(data_dir=DOWNLOAD, cache_dir=tmp_path / "cache")


def _copy(tmp_path: Path, folder: str) -> Path:
    root = tmp_path / "download"
    shutil.copytree(DOWNLOAD / folder, root / folder)
    return root


@pytest.mark.parametrize("name", sorted(TASK_LANGS))
def test_every_split_of_the_fixture_loads_in_the_exact_task_schema(name: str, ctx: LoadContext) -> None:
    task = get_task(name)
    for split, lang in [("train", "en"), ("validation", "en")] + [
        ("test", lang) for lang in TASK_LANGS[name]
    ]:
        ds = task.load(split, lang, ctx)
        assert ds.features == task.features
        assert list(ds.features) == list(task.features)  # same column order too
        assert len(ds) >= 1


def test_xnli_tsv_decodes_csv_quoting(ctx: LoadContext) -> None:
    train = get_task("xnli").load("train", "en", ctx)
    # the file holds "He said ""no""<TAB>and left." -- one quoted field with a tab and doubled quotes
    assert train[1] == {"premise": 'He said "no"\tand left.', "hypothesis": "He agreed.", "label": 2}
    assert [NLI_LABELS[i] for i in train["label"]] == [
        "entailment", "contradiction", "neutral", "entailment", "contradiction", "neutral"
    ]  # fmt: skip
    test_de = get_task("xnli").load("test", "de", ctx)
    assert test_de[2]["premise"] == 'Er sagte: "Ja".'


def test_pawsx_gets_row_position_ids(ctx: LoadContext) -> None:
    ds = get_task("pawsx").load("test", "de", ctx)
    assert ds["id"] == [0, 1]
    assert ds["label"] == [1, 0]
    assert ds[0]["sentence2"] == "In Spanien wurde der Film gedreht."


def test_word_tag_blocks(ctx: LoadContext) -> None:
    ud = get_task("udpos").load("train", "en", ctx)
    assert len(ud) == 4
    assert ud[2]["tokens"] == ["New", "York", "is", "big"]
    assert [UPOS_TAGS[i] for i in ud[2]["pos_tags"]] == ["PROPN", "PROPN", "AUX", "ADJ"]
    px = get_task("panx").load("test", "de", ctx)
    assert px[1] == {
        "tokens": ["Die", "Deutsche", "Bahn", "fährt"],
        "ner_tags": [0, 3, 4, 0],  # O B-ORG I-ORG O
        "langs": ["de"] * 4,
    }


def test_squad_json_keeps_paragraphs_and_every_answer(ctx: LoadContext) -> None:
    dev = get_task("xquad").load("validation", "en", ctx)  # SQuAD v1.1 dev is the en dev set
    assert dev["id"] == ["sq-dev-1", "sq-dev-2", "sq-dev-3"]
    first = dev[0]
    assert first["title"] == "Super_Bowl_50"
    assert first["answers"]["text"] == [
        "Levi's Stadium", "Levi's Stadium in Santa Clara, California", "Santa Clara, California"
    ]  # fmt: skip
    for row in dev:
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True):
            assert row["context"][start : start + len(text)] == text
    assert dev[2]["context"] == "The Denver Broncos defeated the Carolina Panthers 24 to 10."
    test_de = get_task("xquad").load("test", "de", ctx)
    assert test_de[0]["question"] == "Wo fand das Spiel statt?"


def test_mlqa_reads_the_same_language_file(ctx: LoadContext) -> None:
    zh = get_task("mlqa").load("test", "zh", ctx)
    assert zh["id"] == ["ml-te-zh-1", "ml-te-zh-2"]  # not the context-en-question-zh file
    assert get_task("mlqa").load("validation", "en", ctx)["id"] == ["ml-dev-en-1", "ml-dev-en-2"]
    assert get_task("mlqa").load("train", "en", ctx)[0]["id"] == "sq-tr-1"  # trains on SQuAD v1.1


def test_tydiqa_train_keeps_only_english_ids(ctx: LoadContext, tmp_path: Path) -> None:
    train = get_task("tydiqa").load("train", "en", ctx)
    # the combined train file holds english, arabic and finnish questions
    assert train["id"] == ["english-1001-0", "english-1001-1", "english-1002-0"]
    assert get_task("tydiqa").load("test", "ar", ctx)["answers"][0]["text"] == ["القاهرة"]
    # without the combined file, XTREME's per-language split file (ids without the prefix) is read
    root = tmp_path / "dl"
    folder = root / "tydiqa" / "tydiqa-goldp-v1.1-train"
    folder.mkdir(parents=True)
    (folder / "tydiqa.goldp.en.train.json").write_text(
        '{"version": "1.1", "data": [{"paragraphs": [{"context": "Oslo is in Norway.", "qas": '
        '[{"id": "7", "question": "Where is Oslo?", "answers": [{"answer_start": 11, "text": "Norway"}]}]}]}]}'
    )
    row = get_task("tydiqa").load("train", "en", LoadContext(data_dir=root, cache_dir=tmp_path / "c"))[0]
    assert (row["id"], row["title"], row["answers"]["text"]) == ("7", "", ["Norway"])


@pytest.mark.parametrize(
    ("name", "lang", "path"),
    [
        ("xnli", "de", "xnli/test-de.tsv"),
        ("udpos", "de", "udpos/test-de.tsv"),
        ("panx", "de", "panx/test-de.tsv"),
        ("xquad", "de", "xquad/xquad.de.json"),
    ],
)
def test_label_stripped_test_files_raise_naming_file_and_alternatives(
    name: str, lang: str, path: str, tmp_path: Path
) -> None:
    ctx = LoadContext(data_dir=FIXTURES / "unlabeled", cache_dir=tmp_path)
    with pytest.raises(XtunerError) as err:
        get_task(name).load("test", lang, ctx)
    msg = str(err.value)
    assert str(FIXTURES / "unlabeled" / path) in msg
    assert "strips the labels" in msg and "test_data: hub" in msg and "test_data: release:<folder>" in msg
    assert "eval_split: validation" in msg and "xnli.test.tsv" in msg and "test_2k.tsv" in msg
    assert not list((tmp_path).rglob("*.arrow"))  # nothing half-written to the cache


def test_malformed_tsv_line_names_file_and_line(tmp_path: Path) -> None:
    root = _copy(tmp_path, "xnli")
    path = root / "xnli" / "train-en.tsv"
    lines = path.read_bytes().split(b"\r\n")
    lines[3] = b"only one field"  # physical line 4 (line 2 of the file is a quoted record)
    path.write_bytes(b"\r\n".join(lines))
    with pytest.raises(XtunerError, match=rf"{re.escape(str(path))}:4: malformed line: 1 fields, expected 3"):
        get_task("xnli").load("train", "en", LoadContext(data_dir=root, cache_dir=tmp_path / "c"))
    assert not list((tmp_path / "c").rglob("*.arrow"))  # no partial dataset left in the cache


def test_a_bare_quote_that_would_merge_lines_is_an_error(tmp_path: Path) -> None:
    """A file written without csv quoting whose sentence starts with a quote: csv would read lines 2-3 as one
    example of 3 fields (the quote closes mid-line 3), silently; it names the lines instead."""
    root = _copy(tmp_path, "pawsx")
    path = root / "pawsx" / "train-en.tsv"
    path.write_text('First one.\tFirst two.\t1\n"Quoted start.\tSecond two.\t0\nThird" one.\tThird two.\t1\n')
    with pytest.raises(XtunerError, match=rf"{re.escape(str(path))}:2: a field opens with a quote .* line 3"):
        list(get_task("pawsx").load("train", "en", LoadContext(data_dir=root, cache_dir=tmp_path / "c")))
    path.write_text('First one.\tFirst two.\t1\n"Quoted ""start""."\tSecond two.\t0\nThird one.\tThird two.\t1\n')
    rows = get_task("pawsx").load("train", "en", LoadContext(data_dir=root, cache_dir=tmp_path / "c2"))
    assert [r["sentence1"] for r in rows] == ["First one.", 'Quoted "start".', "Third one."]  # csv-quoted: fine


def test_malformed_and_mislabelled_tag_lines_name_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "dl"
    (root / "udpos").mkdir(parents=True)
    path = root / "udpos" / "dev-en.tsv"
    ctx = LoadContext(data_dir=root, cache_dir=tmp_path / "c")
    path.write_text("A\tDET\ncat\tNOUN\n\nIt\tPRON\textra\n")
    with pytest.raises(XtunerError, match=rf"{re.escape(str(path))}:4: malformed line .*3 fields"):
        get_task("udpos").load("validation", "en", ctx)
    path.write_text("A\tDET\ncat\tNOUNS\n")
    with pytest.raises(
        XtunerError, match=rf"{re.escape(str(path))}:2: label 'NOUNS' is not one of the task's labels"
    ):
        get_task("udpos").load("validation", "en", ctx)
    path.write_text("A\tDET\ncat\n")  # a word without tag after labelled lines: malformed, not "unlabeled"
    with pytest.raises(XtunerError, match=rf"{re.escape(str(path))}:2: malformed line 'cat'"):
        get_task("udpos").load("validation", "en", ctx)


def test_unknown_label_and_malformed_json(tmp_path: Path) -> None:
    root = _copy(tmp_path, "xnli")
    path = root / "xnli" / "dev-en.tsv"
    path.write_text("a\tb\tentailment\r\nc\td\tmaybe\r\n")
    ctx = LoadContext(data_dir=root, cache_dir=tmp_path / "c")
    with pytest.raises(
        XtunerError, match=rf"{re.escape(str(path))}:2: label 'maybe' is not one of the task's labels"
    ):
        get_task("xnli").load("validation", "en", ctx)
    path.write_text("a\tb\tcontradictory\r\n")  # XNLI-MT's spelling is normalised
    assert get_task("xnli").load("validation", "en", ctx)["label"] == [2]
    squad = root / "squad"
    squad.mkdir()
    (squad / "dev-v1.1.json").write_text('{"data": [\n{"paragraphs": [}\n]}')
    with pytest.raises(XtunerError, match=rf"{re.escape(str(squad / 'dev-v1.1.json'))}:2: malformed JSON"):
        get_task("xquad").load("validation", "en", ctx)
    (squad / "dev-v1.1.json").write_text('{"data": [{"paragraphs": [{"qas": []}]}]}')
    with pytest.raises(XtunerError, match=r"malformed SQuAD JSON \(article 0, paragraph 0\): KeyError"):
        get_task("xquad").load("validation", "en", ctx)


def test_unknown_language_missing_files_and_english_only_splits(ctx: LoadContext) -> None:
    with pytest.raises(XtunerError, match=r"unknown language 'de_'.*did you mean 'de'.*ar, bg, de, el, en"):
        get_task("xnli").load("test", "de_", ctx)
    with pytest.raises(
        XtunerError, match=rf"missing file {re.escape(str(DOWNLOAD / 'pawsx' / 'test-fr.tsv'))}"
    ):
        get_task("pawsx").load("test", "fr", ctx)
    with pytest.raises(  # other languages' train sets: XTREME's translations (tests/test_translate_train.py)
        XtunerError, match=r"missing file .*xnli/translate-train/en-fr-translated.tsv; XTREME's download script"
    ):
        get_task("xnli").load("train", "fr", ctx)
    with pytest.raises(XtunerError, match="missing file .*squad.translate.train.en-es.json; XTREME's"):
        get_task("xquad").load("train", "es", ctx)
    with pytest.raises(XtunerError, match="task 'xquad' has no validation data in 'de'"):
        get_task("xquad").load("validation", "de", ctx)


def test_source_detection_errors(tmp_path: Path) -> None:
    with pytest.raises(XtunerError, match="does not exist"):
        get_task("xnli").load("test", "en", LoadContext(data_dir=tmp_path / "nope"))
    with pytest.raises(XtunerError, match=r"no data for task 'xnli' under data_dir .*xnli.*source='hub'"):
        get_task("xnli").load("test", "en", LoadContext(data_dir=tmp_path))
    with pytest.raises(XtunerError, match=r"unknown data source 'xtrme' \(did you mean 'xtreme'\?\)"):
        get_task("xnli").load("test", "en", LoadContext(data_dir=DOWNLOAD, options={"source": "xtrme"}))
    with pytest.raises(XtunerError, match="data source 'xtreme' needs a data_dir"):
        get_task("xnli").load("test", "en", LoadContext(options={"source": "xtreme"}))


def test_parsed_files_are_cached_and_refreshed_when_the_file_changes(tmp_path: Path) -> None:
    root = _copy(tmp_path, "pawsx")
    ctx = LoadContext(data_dir=root, cache_dir=tmp_path / "cache")
    ds = get_task("pawsx").load("validation", "en", ctx)
    assert all(Path(f["filename"]).is_relative_to(tmp_path / "cache") for f in ds.cache_files)
    assert len(ds) == 2
    (root / "pawsx" / "dev-en.tsv").write_text("a b\tb a\t0\r\n")
    assert get_task("pawsx").load("validation", "en", ctx)["sentence1"] == ["a b"]
