"""MLQA exact match and F1, as the official ``mlqa_evaluation_v1.py`` (facebookresearch/MLQA) computes them.

Differences from SQuAD v1.1 (``xtuner.metrics.squad``), all per the official script:
- punctuation is every Unicode character of category ``P*`` plus ``string.punctuation``;
- articles are removed per answer language (en: a an the; es: un una unos unas el la los las; de: ein eine
  einen einem eines einer der die das den dem des; vi: của là cái chiếc những; ar: the ``ال`` sequence wherever
  it occurs, as the official regex does; hi and zh: none);
- tokens are whitespace-separated, except zh, which uses mixed segmentation (every CJK character in
  U+4E00..U+9FA5 is a token of its own, runs of other characters are split on whitespace).
The steps run in the official order: lower -> remove punctuation -> remove articles -> re-tokenise.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence

from xtuner.errors import unknown_name
from xtuner.metrics.squad import qa_scores

WHITESPACE_LANGS = ("en", "es", "hi", "vi", "de", "ar")
MIXED_SEGMENTATION_LANGS = ("zh",)
MLQA_LANGS = WHITESPACE_LANGS + MIXED_SEGMENTATION_LANGS

_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "ar": re.compile(r"\sال^|ال"),  # sic: the official pattern, which removes every "ال"
}
_CJK = re.compile(r"[\u4e00-\u9fa5]")
_ASCII_PUNCT = frozenset(string.punctuation)


def is_punct(ch: str) -> bool:
    """Membership in the official PUNCT set: Unicode category P* or ASCII string.punctuation."""
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def mixed_segmentation(text: str) -> list[str]:
    """Split CJK characters (and punctuation) into single-character tokens, the rest on whitespace."""
    out: list[str] = []
    buf = ""
    for ch in text:
        if _CJK.search(ch) or is_punct(ch):
            if buf:
                out.extend(buf.split())
                buf = ""
            out.append(ch)
        else:
            buf += ch
    if buf:
        out.extend(buf.split())
    return out


def normalize_answer(s: str, lang: str) -> str:
    if lang not in MLQA_LANGS:
        raise unknown_name("MLQA answer language", lang, MLQA_LANGS)
    text = "".join(ch for ch in s.lower() if not is_punct(ch))
    if lang in _ARTICLES:
        text = _ARTICLES[lang].sub(" ", text)
    tokens = mixed_segmentation(text) if lang in MIXED_SEGMENTATION_LANGS else text.split()
    return " ".join(t for t in tokens if t.strip() != "")


def mlqa(predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str) -> dict[str, float]:
    """Official MLQA EM/F1 (percentages) for answers in language `lang`; ``score`` is their mean."""
    if lang not in MLQA_LANGS:
        raise unknown_name("MLQA answer language", lang, MLQA_LANGS)
    return qa_scores(predictions, references, lambda s: normalize_answer(s, lang))
