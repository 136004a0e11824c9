"""Unlabeled pretraining text in every synthetic language, with a controlled share of code-switching.

Real multilingual corpora contain code-switching and shared anchors (names, numbers); both give cross-lingual
alignment within a short pretraining budget. A line packs a few sentences of one language; with probability
`cs_share` the line is code-switched: each word is replaced by its translation in a random other language with
probability `switch_p`. The text never reuses the task splits' random streams.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from xtuner.synth.grammar import Sampler, coordinate, detokenize, linearize, realize
from xtuner.synth.languages import LANGUAGE_CODES, LANGUAGES, stable_hash


def corpus_lines(
    n_lines: int,
    seed: int = 0,
    *,
    cs_share: float = 0.3,
    switch_p: float = 0.3,
    sentences: tuple[int, int] = (1, 3),
) -> Iterator[str]:
    rng = random.Random(stable_hash("corpus", seed))
    s = Sampler(rng, p_name=0.3)
    for _ in range(n_lines):
        lang = LANGUAGES[rng.choice(LANGUAGE_CODES)]
        switch = rng.random() < cs_share
        others = tuple(c for c in LANGUAGE_CODES if c != lang.code)
        words: list[str] = []
        for _ in range(rng.randint(*sentences)):
            r = rng.random()
            if r < 0.15:
                clause = s.intransitive_named()
            else:
                clause = s.transitive(social=r < 0.35, neg=rng.random() < 0.2)
            toks = linearize(clause, lang)
            if rng.random() < 0.1:
                toks = coordinate(toks, linearize(s.transitive(p_loc=0.3), lang), rng.choice(("and", "but")))
            words += realize(toks, lang, rng=rng, switch_p=switch_p if switch else 0.0, switch_langs=others)
        yield detokenize(words)[0]
