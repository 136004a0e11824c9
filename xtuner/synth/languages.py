"""Synthetic target languages at graded distance from the English-like source.

Each language is made by documented transformations of the source (see docs/synthetic.md):

1. **Relexification.** Content lemmas are ranked once by a fixed hash; a language relexifies the first
   ``relex`` fraction of them into generated word forms (syllables from its own inventory). Farther languages
   relexify a superset of what nearer ones do. The remaining content words stay as **near-cognates**: the
   English spelling passed through the language's spelling rules (c->k, w->v, ...), so they share sub-word pieces
   with English. **Function words** (determiners, prepositions, auxiliaries, negation, conjunctions, pronouns,
   question words) are relexified in every target language, so zero-shot accuracy measures alignment, not
   shared tokens.
2. **Morphology.** Targets inflect regularly: plural = stem + plural suffix, past = stem + past suffix.
3. **Word order.** SVO or SOV (verb-final); adjective before or after the noun; prepositions or postpositions.
4. **Script.** The farthest languages map Latin letters to another Unicode block (Cyrillic, Georgian).

Names (PROPN) and digits are shared anchors in every language, in the Latin script, as in real text.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import cached_property

from xtuner.synth.lexicon import EN_PAST, content_lemmas, function_lemmas

SOURCE = "en"


def stable_hash(*parts: object) -> int:
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


_CYRILLIC = dict(zip("abcdefghijklmnopqrstuvwxyz", "абцдефгхийклмнопщрстуввхыз", strict=True))
_GEORGIAN = dict(zip("abcdefghijklmnopqrstuvwxyz", "აბცდეფგჰიჯკლმნოპქრსტუვწხყზ", strict=True))
SCRIPTS = {"Latin": None, "Cyrillic": _CYRILLIC, "Georgian": _GEORGIAN}


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    relex: (
        float  # fraction of content lemmas replaced by generated forms (function words: always, in targets)
    )
    order: str = "SVO"  # SVO | SOV
    adj: str = "pre"  # adjective before (pre) or after (post) the noun
    adp: str = "pre"  # prepositions (pre) or postpositions (post)
    script: str = "Latin"
    cognate_rules: tuple[tuple[str, str], ...] = ()
    consonants: str = "bdfgklmnprstvz"
    vowels: str = "aeiou"
    plural: str = "s"
    past: str = ""
    rank: int = 0  # distance rank: 0 = source, higher = farther

    @property
    def is_source(self) -> bool:
        return self.code == SOURCE

    def metadata(self) -> dict:
        return {
            "code": self.code,
            "name": self.name,
            "distance_rank": self.rank,
            "relex": self.relex,
            "function_words_relexified": not self.is_source,
            "order": self.order,
            "adjective": self.adj,
            "adposition": self.adp,
            "script": self.script,
            "cognate_rules": [f"{a}->{b}" for a, b in self.cognate_rules],
        }

    # ---- the lexicon of this language -------------------------------------------------------------------
    @cached_property
    def _table(self) -> dict[str, str]:
        """lemma -> stem in this language (Latin script; script mapping happens in `form`)."""
        content = content_lemmas()
        functions = function_lemmas()
        if self.is_source:
            return {lemma: lemma for lemma in [*content, *functions]}
        ranked = sorted(content, key=lambda w: stable_hash("relex-rank", w))
        n_relex = round(self.relex * len(ranked))
        relexified = set(ranked[:n_relex]) | set(functions)
        table: dict[str, str] = {}
        used: set[str] = set()
        for lemma in [*ranked, *sorted(functions)]:
            if lemma in relexified:
                word = self._generate(lemma, used, short=lemma in functions)
            else:
                word = self._cognate(lemma)
            used.add(word)
            table[lemma] = word
        return table

    def _cognate(self, word: str) -> str:
        for pat, rep in self.cognate_rules:
            word = re.sub(pat, rep, word)
        return word

    def _generate(self, lemma: str, used: set[str], short: bool) -> str:
        for salt in range(100):
            h = stable_hash(self.code, lemma, salt)
            n_syll = 1 + (h % 2) if short else 1 + (h % 3) + (len(lemma) > 6)
            out = []
            for i in range(n_syll):
                hh = stable_hash(h, i)
                out.append(
                    self.consonants[hh % len(self.consonants)] + self.vowels[(hh >> 8) % len(self.vowels)]
                )
            if not short and (h >> 16) % 2:
                out.append(self.consonants[(h >> 20) % len(self.consonants)])
            word = "".join(out)
            if word not in used and word not in _SOURCE_WORDS:
                return word
        raise RuntimeError(f"could not generate a unique word for {lemma!r} in {self.code}")

    def stem(self, lemma: str) -> str:
        return self._table[lemma]

    def form(self, lemma: str, morph: str | None = None) -> str:
        """Surface form of a lemma with optional morphology ("PL", "PAST"), in this language's script."""
        if self.is_source:
            if morph == "PAST":
                return EN_PAST[lemma]
            if morph == "PL":
                return lemma + "s"
            return lemma
        word = self._table[lemma]
        if morph == "PL":
            word += self.plural
        elif morph == "PAST":
            word += self.past
        return self.to_script(word)

    def to_script(self, word: str) -> str:
        mapping = SCRIPTS[self.script]
        return "".join(mapping.get(ch, ch) for ch in word) if mapping else word


_SOURCE_WORDS = set(content_lemmas()) | set(function_lemmas()) | set(EN_PAST.values())

LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in [
        Language(SOURCE, "English-like source", relex=0.0, plural="s", rank=0),
        Language(
            "s1", "near (cognates, SVO)", relex=0.15, rank=1, plural="es", past="ed",
            cognate_rules=(("c", "k"), ("w", "v"), ("th", "t"), ("y", "i")),
        ),
        Language(
            "s2", "near-mid (noun-adjective)", relex=0.35, adj="post", rank=2, plural="en", past="te",
            cognate_rules=(("c", "k"), ("w", "v"), ("sh", "sch"), ("ee", "ie"), ("oo", "u")),
            consonants="bdfgklmnprstvz", vowels="aeiou",
        ),
        Language(
            "s3", "mid (SOV, postpositions)", relex=0.55, order="SOV", adp="post", rank=3, plural="lar", past="di",
            cognate_rules=(("c", "k"), ("w", "v"), ("th", "t"), ("ea", "e"), ("y", "i"), ("([^aeiou])$", r"\1u")),
            consonants="bcdgklmnprstyz", vowels="aeiou",
        ),
        Language(
            "s4", "mid-far (SOV, noun-adjective)", relex=0.75, order="SOV", adj="post", adp="post", rank=4,
            plural="ta", past="mo", cognate_rules=(("c", "k"), ("r", "l"), ("th", "s"), ("w", "u"), ("([^aeiou])$", r"\1o")),
            consonants="bdghkmnprstw", vowels="aeiou",
        ),
        Language(
            "s5", "far (SOV, Cyrillic script)", relex=0.85, order="SOV", adp="post", script="Cyrillic", rank=5,
            plural="ov", past="la", cognate_rules=(("c", "k"), ("w", "v"), ("th", "t"), ("x", "ks")),
            consonants="bdgklmnprstvz", vowels="aeiouy",
        ),
        Language(
            "s6", "farthest (SOV, noun-adjective, Georgian script)", relex=1.0, order="SOV", adj="post",
            adp="post", script="Georgian", rank=6, plural="ebi", past="da", consonants="bdgkhlmnprstvz",
            vowels="aeiou",
        ),
    ]
}  # fmt: skip

LANGUAGE_CODES = tuple(sorted(LANGUAGES))
