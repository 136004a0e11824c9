"""The retrieval tasks (tatoeba, bucc2018 and their synthetic twins): readers for the real layouts (XTREME's download
folder, LASER's and BUCC's own files, the hub's tables through a mirror), the evaluation's plumbing with known
answers, a real encoder on synthetic data, and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, Features, Value

from xtuner.errors import XtunerError
from xtuner.retrieval.evaluate import Encoder, evaluate_retrieval, sides
from xtuner.tasks import HeadType, LoadContext, get_task

DE = ["Das Haus ist rot.", "Ich habe einen Hund.", "Sie liest ein Buch.", "Wir gehen nach Hause."]
EN = ["The house is red.", "I have a dog.", "She reads a book.", "We are going home."]


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ tatoeba
def test_tatoeba_from_laser_files(tmp_path: Path) -> None:
    v1 = tmp_path / "LASER-master" / "data" / "tatoeba" / "v1"
    _write(v1 / "tatoeba.deu-eng.deu", DE)
    _write(v1 / "tatoeba.deu-eng.eng", EN)
    ds = get_task("tatoeba").load("test", "de", LoadContext(data_dir=tmp_path))
    rows = ds.to_list()
    assert len(rows) == 8
    assert rows[1] == {"id": "de-1", "lang": "de", "sentence": DE[1], "gold": "en-1"}
    assert rows[5] == {"id": "en-1", "lang": "en", "sentence": EN[1], "gold": "de-1"}


def test_tatoeba_xtreme_folder_sorted_english_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "tatoeba" / "de-en.de", DE)
    _write(tmp_path / "tatoeba" / "de-en.en", sorted(EN))  # what XTREME's tatoeba_preprocess writes
    with pytest.raises(XtunerError, match="sorted.*LASER"):
        get_task("tatoeba").load("test", "de", LoadContext(data_dir=tmp_path))
    _write(tmp_path / "tatoeba" / "de-en.en", EN)  # a labelled (line-parallel) copy in the same layout loads
    assert len(get_task("tatoeba").load("test", "de", LoadContext(data_dir=tmp_path))) == 8


def test_tatoeba_unequal_sides_and_pivot_errors(tmp_path: Path) -> None:
    _write(tmp_path / "tatoeba.deu-eng.deu", DE)
    _write(tmp_path / "tatoeba.deu-eng.eng", EN[:3])
    task, ctx = get_task("tatoeba"), LoadContext(data_dir=tmp_path)
    with pytest.raises(XtunerError, match="4 de sentences but 3 English"):
        task.load("test", "de", ctx)
    with pytest.raises(XtunerError, match="English is the pivot"):
        task.load("test", "en", ctx)
    with pytest.raises(XtunerError, match="no train data"):
        task.load("train", "de", ctx)


# ------------------------------------------------------------------------------------------------ BUCC
def _bucc_part(folder: Path, prefix: str, gold: bool = True) -> None:
    _write(folder / f"{prefix}.de", [f"de-00000000{i}\t{s}" for i, s in enumerate(DE, 1)])
    _write(folder / f"{prefix}.en", [f"en-00000000{i}\t{s}" for i, s in enumerate([*EN[::-1], "A distractor."], 1)])
    if gold:
        _write(folder / f"{prefix}.gold", ["de-000000001\ten-000000004", "de-000000003\ten-000000002"])


def test_bucc_xtreme_folder_dev_gold_and_stripped_test(tmp_path: Path) -> None:
    _bucc_part(tmp_path / "bucc2018", "de-en.dev")
    _bucc_part(tmp_path / "bucc2018", "de-en.test", gold=False)  # XTREME deletes the test gold
    task, ctx = get_task("bucc2018"), LoadContext(data_dir=tmp_path)
    other, english = sides(task, "validation", "de", ctx)
    assert other.ids == [f"de-00000000{i}" for i in range(1, 5)] and len(english.ids) == 5
    assert other.gold == [["en-000000004"], [], ["en-000000002"], []]
    assert english.sentences[3] == EN[0] and english.gold[3] == ["de-000000001"]
    with pytest.raises(XtunerError, match="de-en.test.gold is missing.*release"):
        task.load("test", "de", ctx)


def test_bucc_release_layout_and_bad_lines(tmp_path: Path) -> None:
    _bucc_part(tmp_path / "bucc2018" / "de-en", "de-en.sample")
    _bucc_part(tmp_path / "bucc2018" / "de-en", "de-en.training")
    task, ctx = get_task("bucc2018"), LoadContext(data_dir=tmp_path, options={"source": "release"})
    assert len(task.load("test", "de", ctx)) == 9
    _write(tmp_path / "bucc2018" / "de-en" / "de-en.training.gold", ["de-000000001\ten-000000099"])
    with pytest.raises(XtunerError, match="names 'en-000000099'"):
        task.load("test", "de", ctx)
    _write(tmp_path / "bucc2018" / "de-en" / "de-en.training.de", ["de-000000001 no tab here"])
    with pytest.raises(XtunerError, match=r"de-en.training.de:1: malformed line"):
        task.load("test", "de", ctx)


# ------------------------------------------------------------------------------------------------ hub
def test_hub_tables_through_a_mirror(tmp_path: Path) -> None:
    s = Value("string")
    feats = Features({"source_sentence": s, "target_sentence": s, "source_lang": s, "target_lang": s})
    x = tmp_path / "google" / "xtreme"
    (x / "tatoeba.deu").mkdir(parents=True)
    Dataset.from_dict({"source_sentence": [d + "\n" for d in DE], "target_sentence": [e + "\n" for e in EN],
                       "source_lang": ["deu"] * 4, "target_lang": ["eng"] * 4},
                      features=feats).to_parquet(str(x / "tatoeba.deu" / "validation-00000-of-00001.parquet"))  # fmt: skip
    (x / "bucc18.de").mkdir()
    Dataset.from_dict({"source_sentence": DE[:2], "target_sentence": EN[:2],
                       "source_lang": ["de-000000007", "de-000000009"], "target_lang": ["en-000000003", "en-000000001"]},
                      features=feats).to_parquet(str(x / "bucc18.de" / "test-00000-of-00001.parquet"))  # fmt: skip
    ctx = LoadContext(cache_dir=tmp_path / "c", options={"hub_mirror": str(tmp_path)})
    tat = get_task("tatoeba").load("test", "de", ctx).to_list()
    assert tat[0]["sentence"] == DE[0] and tat[4] == {"id": "en-0", "lang": "en", "sentence": EN[0], "gold": "de-0"}
    other, english = sides(get_task("bucc2018"), "test", "de", ctx)
    assert other.ids == ["de-000000007", "de-000000009"] and other.gold == [["en-000000003"], ["en-000000001"]]
    assert english.sentences == EN[:2]


# ------------------------------------------------------------------------------------------------ evaluation
class OracleEncoder(Encoder):
    """Vectors that make every gold pair identical and every other sentence distinct: the evaluation around the
    encoder must then score 100."""

    def __init__(self, concept: dict[str, int]) -> None:
        super().__init__(model=None, tokenizer=None)
        self.concept = concept

    def vectors(self, sentences: list[str], family: str) -> np.ndarray:
        size = max(self.concept.values()) + 1
        out = np.full((len(sentences), size), 0.05, dtype=np.float32)
        for i, s in enumerate(sentences):
            out[i, self.concept[s]] = 1.0
        return out


def _concepts(task, lang: str, splits: tuple[str, ...]) -> dict[str, int]:
    concept: dict[str, int] = {}
    for split in splits:
        other, english = sides(task, split, lang, LoadContext())
        for side, partner in ((other, english), (english, other)):
            text_of = dict(zip(partner.ids, partner.sentences, strict=True))
            for sentence, gold in zip(side.sentences, side.gold, strict=True):
                key = concept.setdefault(sentence, len(concept))
                for g in gold:
                    concept[text_of[g]] = key
    return concept


def test_evaluation_scores_100_with_an_oracle_encoder() -> None:
    tat = get_task("synth-tatoeba")
    res = evaluate_retrieval(tat, OracleEncoder(_concepts(tat, "s2", ("test",))), ["en", "s2"])
    assert res == {"s2": {"accuracy": 100.0, "accuracy_to_en": 100.0}}
    bucc = get_task("synth-bucc")
    res = evaluate_retrieval(bucc, OracleEncoder(_concepts(bucc, "s2", ("validation", "test"))), ["s2"])
    assert res["s2"]["f1"] == 100.0 and res["s2"]["threshold"] > 1.0


def test_synthetic_tables_are_parallel_and_bucc_has_distractors() -> None:
    other, english = sides(get_task("synth-tatoeba"), "test", "s3", LoadContext())
    assert len(other.ids) == len(english.ids) == 500 and len(set(english.sentences)) == 500
    other, english = sides(get_task("synth-bucc"), "test", "s3", LoadContext())
    matched = sum(bool(g) for g in other.gold)
    assert len(other.ids) == 1200 and matched == 240 and sum(bool(g) for g in english.gold) == 240
    assert get_task("synth-bucc").head == HeadType.RETRIEVAL


def test_untrained_encoder_retrieves_above_chance(tiny_model: str, tmp_path: Path) -> None:
    from xtuner.metrics.examples import read_predictions, score
    from xtuner.trial import run_trial

    result = run_trial({"task": "synth-tatoeba", "model": tiny_model, "method": "finetune", "lr": 1e-4,
                        "languages": ["en", "s1"], "predictions_dir": str(tmp_path / "preds")})  # fmt: skip
    assert set(result["test"]) == {"s1"}  # English is the pivot, not a scored language
    assert result["test"]["s1"]["accuracy"] > 2.0  # chance: 0.2 % (1 of 500)
    assert result["metrics"]["test/s1/accuracy"] == result["test"]["s1"]["accuracy"]
    assert result["metrics"]["test/s1/main"] == result["metrics"]["test/others/main"] == result["avg"]["accuracy"]
    assert result["train_seconds"] == 0.0
    meta, frames = read_predictions(tmp_path / "preds")  # one row per English sentence: retrieved vs gold
    assert meta["kind"] == "accuracy" and list(frames) == ["s1"] and len(frames["s1"]) == 500
    assert score("accuracy", frames["s1"]) == pytest.approx(result["test"]["s1"]["accuracy"])


def test_cli_refuses_an_untrained_prompt_on_a_retrieval_task(capsys) -> None:
    from xtuner.cli import main

    rc = main(["trial", "--task", "synth-tatoeba", "--method", "deep_prompt"])
    err = capsys.readouterr().err
    assert rc == 2
    last = err.strip().splitlines()[-1]  # `trial` prints a one-line header first
    assert last.startswith("error: task 'synth-tatoeba' is a retrieval task") and "Traceback" not in err
    assert "xtuner analyze retrieval" in last


def test_prepare_reads_only_the_retrieval_splits() -> None:
    from xtuner.tasks.xtreme.prepare import needed_splits

    assert needed_splits(get_task("bucc2018"), ["en", "de"]) == [("validation", "de"), ("test", "de")]
    assert needed_splits(get_task("tatoeba"), ["de", "fr"]) == [("test", "de"), ("test", "fr")]
