"""Hub schemas of the XTREME tasks. Synthetic and real tasks produce exactly these features.

- XNLI: facebook/xnli (premise, hypothesis, label: ClassLabel[entailment, neutral, contradiction])
- PAWS-X: google-research-datasets/paws-x (id, sentence1, sentence2, label: ClassLabel["0", "1"])
- UD-POS: google/xtreme udpos.* (tokens, pos_tags: 17 UPOS tags in the hub's order)
- PAN-X: google/xtreme PAN-X.* (tokens, ner_tags: IOB2 over PER/ORG/LOC, langs)
- QA: SQuAD v1.1 / XQuAD / MLQA / TyDiQA-GoldP (id, title, context, question, answers{text, answer_start})
- retrieval (Tatoeba, BUCC 2018): one table per language holding BOTH sides, one row per sentence (id, lang: the
  language or "en", sentence, gold: the id of its translation on the other side, "" for none). Tatoeba's sides are
  line-parallel (every sentence has a gold partner); BUCC's are comparable corpora (most sentences have none).
"""

from __future__ import annotations

from datasets import ClassLabel, Features, List, Value

NLI_LABELS = ("entailment", "neutral", "contradiction")
PAWSX_LABELS = ("0", "1")
UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip
PANX_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")

XNLI_FEATURES = Features(
    {
        "premise": Value("string"),
        "hypothesis": Value("string"),
        "label": ClassLabel(names=list(NLI_LABELS)),
    }
)
PAWSX_FEATURES = Features(
    {
        "id": Value("int32"),
        "sentence1": Value("string"),
        "sentence2": Value("string"),
        "label": ClassLabel(names=list(PAWSX_LABELS)),
    }
)
UDPOS_FEATURES = Features(
    {
        "tokens": List(Value("string")),
        "pos_tags": List(ClassLabel(names=list(UPOS_TAGS))),
    }
)
PANX_FEATURES = Features(
    {
        "tokens": List(Value("string")),
        "ner_tags": List(ClassLabel(names=list(PANX_TAGS))),
        "langs": List(Value("string")),
    }
)
RETRIEVAL_FEATURES = Features(
    {
        "id": Value("string"),
        "lang": Value("string"),
        "sentence": Value("string"),
        "gold": Value("string"),
    }
)
QA_FEATURES = Features(
    {
        "id": Value("string"),
        "title": Value("string"),
        "context": Value("string"),
        "question": Value("string"),
        "answers": {"text": List(Value("string")), "answer_start": List(Value("int32"))},
    }
)
