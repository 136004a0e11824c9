"""The official MLQA metric (per-language normalisation, zh mixed segmentation) and seqeval on raw UPOS tags.

Expected values are computed by hand in the comments.
"""

from __future__ import annotations

import pytest

from xtuner.errors import XtunerError
from xtuner.metrics import seqeval_f1, squad_v1
from xtuner.metrics.mlqa import mixed_segmentation, mlqa, normalize_answer
from xtuner.metrics.squad import normalize_answer as squad_normalize


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("The Eiffel Tower!", "en", "eiffel tower"),  # lower, drop "!", drop article "the"
        ("Los gatos y la casa", "es", "gatos y casa"),  # es articles los, la
        ("Unos perros, unas casas.", "es", "perros casas"),
        ("Der Hund und die Katze", "de", "hund und katze"),  # de articles der, die
        ("einem Mann eines Kindes", "de", "mann kindes"),
        ("cái bàn của tôi", "vi", "bàn tôi"),  # official vi list: của là cái chiếc những
        ("những chiếc xe", "vi", "xe"),
        ("الكتاب", "ar", "كتاب"),  # "ال" -> " "
        ("مال", "ar", "م"),  # sic: the official regex removes "ال" inside words too
        ("यह किताब है।", "hi", "यह किताब है"),  # no articles; the danda (Po) is punctuation
        ("«Hola» — ¿qué?", "es", "hola qué"),  # Unicode P* punctuation: « » — ¿ ?
        ("北京大学", "zh", "北 京 大 学"),  # every CJK character is a token
        ("iPhone手机 2代", "zh", "iphone 手 机 2 代"),  # non-CJK runs split on whitespace
    ],
)
def test_mlqa_normalisation_per_language(text: str, lang: str, expected: str) -> None:
    assert normalize_answer(text, lang) == expected


def test_mlqa_differs_from_squad_on_unicode_punctuation() -> None:
    # SQuAD v1.1 only strips ASCII punctuation: the guillemets stay and EM fails; MLQA strips them.
    assert squad_normalize("«Hola»") == "«hola»"
    assert mlqa(["«Hola»"], [["hola"]], "es")["exact_match"] == 100.0
    assert squad_v1(["«Hola»"], [["hola"]])["exact_match"] == 0.0


def test_mixed_segmentation_keeps_punctuation_tokens() -> None:
    assert mixed_segmentation("你好, world！") == ["你", "好", ",", "world", "！"]


def test_mlqa_zh_scores() -> None:
    # q1: pred 北京大学 -> [北 京 大 学], gold 北京 -> [北 京]; common 2, P = 2/4, R = 2/2, F1 = 2/3, EM 0.
    #     (whitespace tokenisation would give one token each and F1 0.)
    # q2: pred 上海 == gold 上海: EM 1, F1 1 (max over the golds 上海, 上海市).
    # EM = 1/2 = 50; F1 = (2/3 + 1) / 2 = 83.33; score = (50 + 83.33) / 2 = 66.67
    out = mlqa(["北京大学", "上海"], [["北京"], ["上海", "上海市"]], "zh")
    assert out["exact_match"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(250 / 3)
    assert out["score"] == pytest.approx((50.0 + 250 / 3) / 2)


def test_mlqa_en_scores_and_agreement_with_squad_on_ascii() -> None:
    # q1: "the Swiss Alps" vs "Swiss Alps": article removed -> EM 1, F1 1.
    # q2: "North" vs "the North Sea" -> [north] vs [north, sea]: P 1, R 1/2, F1 2/3, EM 0.
    # EM 50, F1 (1 + 2/3) / 2 = 83.33
    preds, refs = ["the Swiss Alps", "North"], [["Swiss Alps"], ["the North Sea"]]
    out = mlqa(preds, refs, "en")
    assert out["exact_match"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(250 / 3)
    assert out == pytest.approx(squad_v1(preds, refs))  # same result as SQuAD on ASCII English


def test_mlqa_rejects_unknown_language_and_empty_labels() -> None:
    with pytest.raises(
        XtunerError, match=r"unknown MLQA answer language 'fr'.*valid MLQA answer languages: ar, de"
    ):
        mlqa(["a"], [["a"]], "fr")
    with pytest.raises(XtunerError, match="no gold answers"):
        mlqa(["a"], [[]], "en")
    with pytest.raises(XtunerError, match="1 predictions but 2 references"):
        mlqa(["a"], [["a"], ["b"]], "en")


def test_seqeval_merges_runs_of_the_same_upos_tag() -> None:
    gold = [["NOUN", "NOUN", "VERB"]]
    assert seqeval_f1([["NOUN", "NOUN", "VERB"]], gold)["f1"] == pytest.approx(100.0)
    # seqeval without B-/I- prefixes reads "NOUN" as tag "N" of type "OUN", and merges a run of the same type:
    # gold chunks: OUN[0..1], ERB[2]                 -> 2 chunks
    # pred [NOUN ADJ VERB]: OUN[0], DJ[1], ERB[2]    -> 3 chunks, only ERB[2] matches a gold chunk
    # P = 1/3, R = 1/2, F1 = 2 * (1/3) * (1/2) / (1/3 + 1/2) = 2/5 = 40%; token accuracy = 2/3
    out = seqeval_f1([["NOUN", "ADJ", "VERB"]], gold)
    assert out["precision"] == pytest.approx(100 / 3)
    assert out["recall"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(40.0)
    assert out["token_accuracy"] == pytest.approx(200 / 3)
