"""Overlong QA questions are always cut to fit, and the cut always ends: real-data cases written by hand (questions
of the kind that crashed XQuAD es/ru/vi and MLQA de/es trials with the shipped tokenizer at the default length) and
a property test over many random strings in several scripts and three kinds of tokenizer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from datasets import Dataset
from tokenizers import ByteLevelBPETokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from xtuner.data.preprocess import _fit_questions, tokenize_split
from xtuner.data.toy_tokenizer import build_toy_tokenizer
from xtuner.metrics import squad_v1
from xtuner.models import resolve_model
from xtuner.tasks.base import HeadType, Task
from xtuner.tasks.schemas import QA_FEATURES
from xtuner.tasks.xtreme.readers import read_squad

LONG = Path(__file__).parent / "fixtures" / "qa" / "long_questions.json"
MAX_LENGTH, DOC_STRIDE = 128, 42  # run_trial's defaults: max_seq_length 128, doc_stride min(128, 128 // 3)
QA = Task(name="t-qa", head=HeadType.EXTRACTIVE_QA, languages=("en",), features=QA_FEATURES,
          loader=lambda *a: None, metric=squad_v1, main_metric="f1", inputs=("question", "context"),
          label_column=None)  # fmt: skip
SCRIPTS = {
    "latin": "abcdefghijklmnopqrstuvwxyzABCXYZ ñçßéèêëüöäÜÖÄ¿¡?!.,'-",
    "cyrillic": "абвгдежзийклмнопрстуфхцчшщъыьэюяЁё ",
    "vietnamese": "aăâbcdđeêghiklmnoôơpqrstuưvxyàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵ ",
    "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي ءآأؤإئ؟،",
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年北京东",
    "devanagari": "अआइईउऊएऐओऔकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसहािीुूेैोौंः ",
    "thai": "กขฃคฅฆงจฉชซฌญฎฏฐฑฒณดตถทธนบปผฝพฟภมยรลวศษสหฬอฮะัาำิีึืุูเแโใไ่้๊๋",
    "other": "\u0301\u0308\u200d\u200b\u200e\U0001f600\U0001f44d\u00a0\t\n",  # combining marks, ZWJ/ZWSP, emoji
}


@pytest.fixture(scope="module")
def shipped():
    return AutoTokenizer.from_pretrained(resolve_model("builtin:tiny-xlmr"))


@pytest.fixture(scope="module")
def tokenizers(shipped, tmp_path_factory) -> dict:
    """The shipped XLM-R-style Unigram tokenizer (2,000 pieces, mostly characters), a toy Unigram one that maps
    every unknown character to <unk>, and a byte-level BPE one (a character becomes several byte tokens that share
    its offsets)."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["".join(SCRIPTS.values()) * 3, "the question is where and when"], vocab_size=400)
    return {
        "shipped": shipped,
        "toy": build_toy_tokenizer(["where", "is", "the"], tmp_path_factory.mktemp("toy")),
        "bytebpe": PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer),
    }


def test_hand_written_real_questions_fit_at_the_default_length(shipped):
    rows = list(read_squad(str(LONG), "", ""))
    budget = MAX_LENGTH - shipped.num_special_tokens_to_add(pair=True) - DOC_STRIDE - 1
    for row in rows:  # each one hits the trap: the prefix up to token `budget` re-tokenizes longer, and the
        q = row["question"]  # end of its last allowed token is the end of that prefix (the old cut looped)
        end = shipped(q, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"][budget - 1][1]
        again = shipped(q[:end], add_special_tokens=False, return_offsets_mapping=True)
        assert len(again["input_ids"]) > budget and again["offset_mapping"][budget - 1][1] == end
    ds = Dataset.from_list(rows, features=QA_FEATURES)
    feats = tokenize_split(QA, ds, shipped, max_length=MAX_LENGTH, doc_stride=DOC_STRIDE, train=False)
    assert sorted(set(feats["example_id"])) == sorted(r["id"] for r in rows)
    for f in feats:
        assert len(f["input_ids"]) <= MAX_LENGTH
        assert sum(o is not None for o in f["offset_mapping"]) >= DOC_STRIDE + 1 or f["start_positions"] > 0
    by_id = {r["id"]: r for r in rows}
    for f in feats:  # the gold answer still sits at the right tokens of the (short) context
        row, s, e = by_id[f["example_id"]], f["start_positions"], f["end_positions"]
        assert s > 0
        found = row["context"][f["offset_mapping"][s][0] : f["offset_mapping"][e][1]]
        assert found.strip() == row["answers"]["text"][0]


@pytest.mark.timeout(300)
def test_fit_questions_always_ends_with_a_fitting_prefix(tokenizers):
    rng = random.Random(14)
    alphabets = list(SCRIPTS.values())
    for name, tok in tokenizers.items():
        questions = []
        for _ in range(300):
            mix = rng.sample(alphabets, rng.randint(1, 3))
            chars = "".join(mix)
            questions.append("".join(rng.choice(chars) for _ in range(rng.randint(0, 160))))
        for budget in (1, 2, 3, 7, 20):
            fitted = _fit_questions(questions, tok, budget)
            lengths = [len(ids) for ids in tok(fitted, add_special_tokens=False)["input_ids"]]
            for q, f, n in zip(questions, fitted, lengths, strict=True):
                assert q.startswith(f), (name, budget, q, f)
                assert n <= budget, (name, budget, q, f)
                if len(tok(q, add_special_tokens=False)["input_ids"]) <= budget:
                    assert f == q  # a question that fits is never touched
