"""The synthetic suite: determinism, hub-schema equality, label sanity, language metadata, size and errors."""

from __future__ import annotations

import random

import pytest

from xtuner.errors import XtunerError
from xtuner.synth import generators as gen
from xtuner.synth.grammar import Sampler, detokenize, linearize, realize
from xtuner.synth.languages import LANGUAGE_CODES, LANGUAGES
from xtuner.tasks import get_task, task_names
from xtuner.tasks import schemas as sc

SYNTH = ["synth-panx", "synth-pawsx", "synth-udpos", "synth-xnli", "synth-xquad"]


def test_all_synthetic_tasks_registered_with_seven_languages():
    assert set(SYNTH) <= set(task_names())
    for name in SYNTH:
        task = get_task(name)
        assert task.source_lang == "en"
        assert len(task.target_languages) >= 6
        assert set(task.languages) == set(LANGUAGE_CODES)


@pytest.mark.parametrize(
    "name,features",
    [
        ("synth-xnli", sc.XNLI_FEATURES),
        ("synth-pawsx", sc.PAWSX_FEATURES),
        ("synth-udpos", sc.UDPOS_FEATURES),
        ("synth-panx", sc.PANX_FEATURES),
        ("synth-xquad", sc.QA_FEATURES),
    ],
)
def test_schema_equals_the_real_tasks_hub_features(name, features):
    ds = get_task(name).load("test", "s3")
    assert ds.features == features


def test_hub_label_orders():
    assert sc.XNLI_FEATURES["label"].names == ["entailment", "neutral", "contradiction"]
    assert sc.UDPOS_FEATURES["pos_tags"].feature.names[:3] == ["ADJ", "ADP", "ADV"]
    assert len(sc.UPOS_TAGS) == 17
    assert sc.PANX_FEATURES["ner_tags"].feature.names == [
        "O",
        "B-PER",
        "I-PER",
        "B-ORG",
        "I-ORG",
        "B-LOC",
        "I-LOC",
    ]


def test_generation_is_deterministic():
    for name in SYNTH:
        a = get_task(name).load("validation", "s2").to_dict()
        gen._cached.cache_clear()
        b = get_task(name).load("validation", "s2").to_dict()
        assert a == b, name


def test_a_different_seed_gives_different_data():
    a = gen.nli_rows("validation", "en", seed=1)
    b = gen.nli_rows("validation", "en", seed=2)
    assert a["premise"] != b["premise"]


def test_sizes():
    for name in SYNTH:
        task = get_task(name)
        assert len(task.load("train", "en")) >= 2000
        assert len(task.load("validation", "en")) > 0
        for lang in task.languages:
            assert len(task.load("test", lang)) >= 500


def test_nli_entailed_hypothesis_facts_are_a_subset_of_the_premise_facts():
    items = gen.nli_items("validation")
    counts = {label: 0 for label in gen.NLI_LABELS}
    for it in items:
        counts[it.label] += 1
        p, h = it.premise.facts(), it.hypothesis.facts()
        if it.label == "entailment":
            assert h <= p
        elif it.label == "contradiction":
            assert ("neg", True) in h and ("neg", False) in p
            assert h - {("neg", True)} <= p
        else:
            assert not h <= p and ("neg", False) in h  # states a fact the premise does not
    assert min(counts.values()) >= len(items) // 3 - 1  # balanced labels


def test_paws_negatives_use_the_same_words_in_a_different_meaning():
    items = gen.para_items("validation")
    en = LANGUAGES["en"]
    for it in items[:200]:
        w1 = sorted(w for w in realize(linearize(it.s1, en), en) if w not in {",", "."})
        w2 = sorted(w for w in realize(linearize(it.s2, en), en) if w not in {",", "."})
        assert w1 == w2  # PAWS-style: identical bag of words (fronting only adds a comma)
        same_meaning = it.s1.facts() == it.s2.facts()
        assert same_meaning == bool(it.label)


@pytest.mark.parametrize("lang", ["en", "s3", "s6"])
def test_qa_answer_is_the_span_at_answer_start(lang):
    ds = get_task("synth-xquad").load("test", lang)
    for row in ds:
        (text,), (start,) = row["answers"]["text"], row["answers"]["answer_start"]
        assert text and row["context"][start : start + len(text)] == text


def test_qa_ids_are_parallel_across_languages():
    task = get_task("synth-xquad")
    assert task.load("test", "en")["id"] == task.load("test", "s5")["id"]


def test_tagging_rows_are_aligned_and_names_are_entities():
    ds = get_task("synth-panx").load("test", "s4")
    n_entities = 0
    for row in ds:
        assert len(row["tokens"]) == len(row["ner_tags"]) == len(row["langs"])
        for tok, tag in zip(row["tokens"], row["ner_tags"], strict=True):
            if tag == 1:  # B-PER: a person name, a shared anchor in the Latin script
                n_entities += 1
                assert tok[0].isupper() and tok.isascii()
    assert n_entities > 100
    pos = get_task("synth-udpos").load("test", "s1")
    tags = {sc.UPOS_TAGS[t] for row in pos for t in row["pos_tags"]}
    assert {
        "NOUN",
        "VERB",
        "ADJ",
        "ADP",
        "DET",
        "NUM",
        "PROPN",
        "PART",
        "AUX",
        "CCONJ",
        "PUNCT",
        "PRON",
    } <= tags


def test_languages_are_graded_and_documented():
    ranks = [LANGUAGES[c].rank for c in LANGUAGE_CODES]
    assert sorted(ranks) == list(range(7))
    relex = [LANGUAGES[c].relex for c in sorted(LANGUAGE_CODES, key=lambda c: LANGUAGES[c].rank)]
    assert relex == sorted(relex) and relex[0] == 0.0 and relex[-1] == 1.0
    meta = get_task("synth-xnli").language_info
    assert meta["s6"]["script"] == "Georgian" and meta["s3"]["order"] == "SOV"
    assert {"relex", "order", "adjective", "adposition", "script"} <= set(meta["s1"])


def test_function_words_are_relexified_in_every_target_but_anchors_are_shared():
    for code in LANGUAGE_CODES:
        if code == "en":
            continue
        lang = LANGUAGES[code]
        for fw in ("the", "not", "in", "and", "did", "who"):
            assert lang.form(fw) != fw, (code, fw)
    s = Sampler(random.Random(3))
    clause = s.intransitive_named()
    names = [t.lemma for t in linearize(clause, LANGUAGES["en"]) if t.kind == "name"]
    for code in LANGUAGE_CODES:
        words = realize(linearize(clause, LANGUAGES[code]), LANGUAGES[code])
        assert all(n in words for n in names)


def test_relexified_share_grows_with_distance():
    en = LANGUAGES["en"]
    from xtuner.synth.lexicon import content_lemmas

    lemmas = list(content_lemmas())
    shares = []
    for code in sorted(LANGUAGE_CODES, key=lambda c: LANGUAGES[c].rank)[1:]:
        lang = LANGUAGES[code]
        shares.append(sum(lang._cognate(w) != lang.stem(w) for w in lemmas) / len(lemmas))
    assert shares == sorted(shares)
    assert en.form("see", "PAST") == "saw"


def test_scripts():
    text = detokenize(
        realize(linearize(Sampler(random.Random(1)).transitive(), LANGUAGES["s6"]), LANGUAGES["s6"])
    )[0]
    assert any("\u10d0" <= ch <= "\u10ff" for ch in text)
    text5 = get_task("synth-xnli").load("test", "s5")["premise"][0]
    assert any("\u0400" <= ch <= "\u04ff" for ch in text5)


def test_bad_names_list_the_valid_ones():
    with pytest.raises(XtunerError, match="did you mean 'synth-xnli'"):
        get_task("synth-xnl")
    with pytest.raises(XtunerError, match="valid languages: en, s1"):
        get_task("synth-xnli").load("test", "de")
    with pytest.raises(XtunerError, match="valid splits"):
        get_task("synth-xnli").load("dev", "en")
