"""A small, real XLM-R-style fast tokenizer built offline (for tests, benchmarks and tiny built-in models).

The vocabulary is a hand-made SentencePiece-Unigram list (the `tokenizers` Unigram trainer, in the installed
version, keeps almost only single characters on small corpora, which gives no multi-piece words to test):
- XLM-R's specials in XLM-R's order: <s>=0, <pad>=1, </s>=2, <unk>=3, and <mask> last;
- "▁" + every given word (score -1: whole words win), then the given sub-word pieces (score -3), then single
  characters with and without "▁" (score -6), so any text over known characters tokenizes without <unk> and
  unknown words split into several pieces. There is no normalizer
  (XLM-R's precompiled charsmap is not reproduced).
It is wrapped in transformers' `XLMRobertaTokenizer` (Metaspace pre-tokenizer, `<s> A </s></s> B </s>`
template), saved with `save_pretrained` and reloaded with `AutoTokenizer.from_pretrained`, i.e. the real path.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, XLMRobertaTokenizer

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def build_toy_tokenizer(words: Iterable[str], save_dir: Path, pieces: Iterable[str] = ()) -> Any:
    """Build, save to `save_dir` and reload an XLM-R-style fast tokenizer whose whole words are `words`."""
    vocab: list[tuple[str, float]] = [(t, 0.0) for t in SPECIALS]
    seen = set(SPECIALS)

    def add(piece: str, score: float) -> None:
        if piece and piece not in seen:
            seen.add(piece)
            vocab.append((piece, score))

    words = list(words)
    pieces = list(pieces)
    add("▁", -2.0)
    for w in words:
        add("▁" + w, -1.0)
    for p in pieces:
        add(p, -3.0)
    chars = sorted(
        set("".join(words) + "".join(pieces) + string.ascii_letters + string.digits + string.punctuation)
    )
    for c in chars:
        add(c, -6.0)
        add("▁" + c, -6.5)
    vocab.append(("<mask>", 0.0))
    tok = XLMRobertaTokenizer(vocab=vocab)
    save_dir = Path(save_dir)
    tok.save_pretrained(str(save_dir))
    return AutoTokenizer.from_pretrained(str(save_dir))
