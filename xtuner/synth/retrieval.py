"""Synthetic twins of the retrieval tasks, from the same grammar and languages as the rest of the suite.

- synth-tatoeba (test only, like Tatoeba): `TATOEBA_SIZE` distinct clauses rendered in English and in the target
  language, line-parallel.
- synth-bucc (validation and test, like BUCC's sample and training parts): comparable corpora. Each side holds the
  gold clauses (rendered on both sides) among clauses of its own that have no translation on the other side, in a
  seeded random order, with BUCC-style ids (``<lang>-000000001``, ``en-000000001``). `BUCC_SIZES` gives
  (sentences per side, gold pairs) per split; gold pairs are 20 % of each side (BUCC's are 2-3 %, so the
  synthetic task is easier: it keeps the mining and threshold code paths honest, not BUCC's difficulty).

Clauses are distinct by their English rendering, so no sentence repeats within a side, and every split's items
depend only on the suite seed, the split and (for BUCC's unmatched sentences) the language.
"""

from __future__ import annotations

import random

from xtuner.synth.grammar import Sampler, detokenize, linearize, realize
from xtuner.synth.languages import LANGUAGES, stable_hash

TATOEBA_SIZE = 500  # the suite's test size (real Tatoeba: about 1,000 per language)
BUCC_SIZES = {"validation": (600, 120), "test": (1200, 240)}


def _render(clause, lang: str) -> str:
    L = LANGUAGES[lang]
    return detokenize(realize(linearize(clause, L), L))[0]


def _distinct_clauses(rng: random.Random, n: int, exclude: set[str]) -> list:
    """`n` clauses whose English renderings are distinct from each other and from `exclude` (which grows)."""
    s = Sampler(rng, p_adj=0.5)
    out = []
    while len(out) < n:
        kind = rng.random()
        if kind < 0.6:
            c = s.transitive(social=rng.random() < 0.3, neg=rng.random() < 0.15)
        else:
            c = s.intransitive_named()
        text = _render(c, "en")
        if text not in exclude:
            exclude.add(text)
            out.append(c)
    return out


def tatoeba_pairs(lang: str, seed: int) -> tuple[list[str], list[str]]:
    """(sentences in `lang`, their English originals), line-parallel."""
    clauses = _distinct_clauses(random.Random(stable_hash("synth-tatoeba", seed)), TATOEBA_SIZE, set())
    return [_render(c, lang) for c in clauses], [_render(c, "en") for c in clauses]


def bucc_part(lang: str, split: str, seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]],
                                                       list[tuple[str, str]]]:  # fmt: skip
    """(source (id, sentence) lines, English (id, sentence) lines, gold (source id, English id) pairs)."""
    per_side, n_gold = BUCC_SIZES[split]
    seen: set[str] = set()
    shared = random.Random(stable_hash("synth-bucc", seed, split))
    gold = _distinct_clauses(shared, n_gold, seen)
    en_only = _distinct_clauses(shared, per_side - n_gold, seen)
    own = random.Random(stable_hash("synth-bucc", seed, split, lang))
    src_only = _distinct_clauses(own, per_side - n_gold, seen)
    src_items = [(i, "gold") for i in range(n_gold)] + [(i, "own") for i in range(len(src_only))]
    en_items = [(i, "gold") for i in range(n_gold)] + [(i, "own") for i in range(len(en_only))]
    own.shuffle(src_items)
    shared.shuffle(en_items)
    src_lines, en_lines, src_of, en_of = [], [], {}, {}
    for n, (i, kind) in enumerate(src_items, start=1):
        sid = f"{lang}-{n:09d}"
        src_lines.append((sid, _render(gold[i] if kind == "gold" else src_only[i], lang)))
        if kind == "gold":
            src_of[i] = sid
    for n, (i, kind) in enumerate(en_items, start=1):
        eid = f"en-{n:09d}"
        en_lines.append((eid, _render(gold[i] if kind == "gold" else en_only[i], "en")))
        if kind == "gold":
            en_of[i] = eid
    pairs = sorted((src_of[i], en_of[i]) for i in range(n_gold))
    return src_lines, en_lines, pairs
