"""Semantics, sampling and rendering of the synthetic grammar.

A sentence is first a *clause* (who did what to whom, where, when, negated or not); `linearize` orders its
constituents for a language (SVO/SOV, adjective and adposition order, fronting) into abstract tokens that carry
lemma, morphology, UPOS, NER tag and role; `realize` turns them into words of a language (optionally
code-switching single words into other languages, for the pretraining corpus). Labels of every task are computed
from the clause, never from the surface text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from xtuner.synth import lexicon as lx
from xtuner.synth.languages import LANGUAGES, Language


@dataclass(frozen=True)
class NP:
    noun: str | None = None  # common-noun lemma
    det: str | None = "the"
    adjs: tuple[str, ...] = ()
    num: int | None = None  # a count; > 1 makes the noun plural
    name: tuple[str, ...] = ()  # proper-name tokens (shared anchors)
    ner: str | None = None  # PER | ORG | LOC for names
    pron: str | None = None  # pronoun lemma
    wh: str | None = None  # question word lemma replacing the NP ("who", "what")

    def facts(self, role: str) -> set[tuple]:
        head = self.noun or " ".join(self.name) or self.pron
        out = {(role, head)}
        out |= {(role + "_adj", a) for a in self.adjs}
        if self.num is not None:
            out.add((role + "_num", self.num))
        return out


@dataclass(frozen=True)
class PP:
    prep: str
    np: NP
    role: str = "loc"


@dataclass(frozen=True)
class Clause:
    agent: NP
    verb: str  # base lemma
    patient: NP | None = None
    pps: tuple[PP, ...] = ()
    time: str | None = None
    neg: bool = False
    front: str | None = None  # "time" | "pp": constituent moved to the front, followed by a comma

    def facts(self) -> set[tuple]:
        """The propositional content, used for NLI labels and their tests."""
        out = self.agent.facts("agent") | {("verb", self.verb), ("neg", self.neg)}
        if self.patient is not None:
            out |= self.patient.facts("patient")
        for pp in self.pps:
            out |= {(pp.role, pp.prep, f) for f in pp.np.facts("pp")}
        if self.time:
            out.add(("time", self.time))
        return out


@dataclass(frozen=True)
class Tok:
    kind: str  # lex | name | num | punct
    lemma: str
    upos: str
    morph: str | None = None
    ner: str = "O"
    role: str = ""  # constituent the token belongs to (agent, patient, pp0, time, verb, ...)


# ---------------------------------------------------------------------------------------------- sampling
@dataclass
class Sampler:
    rng: random.Random
    p_adj: float = 0.4
    p_num: float = 0.25
    p_name: float = 0.25

    def person(self) -> NP:
        toks = (self.rng.choice(lx.PERSON_FIRST),)
        if self.rng.random() < 0.4:
            toks += (self.rng.choice(lx.PERSON_LAST),)
        return NP(noun=None, det=None, name=toks, ner="PER")

    def org(self) -> NP:
        return NP(
            noun=None,
            det=None,
            name=(self.rng.choice(lx.ORG_NAMES), self.rng.choice(lx.ORG_SUFFIX)),
            ner="ORG",
        )

    def place_name(self) -> NP:
        if self.rng.random() < 0.25:
            return NP(noun=None, det=None, name=tuple(self.rng.choice(lx.LOC_TWO).split()), ner="LOC")
        return NP(noun=None, det=None, name=(self.rng.choice(lx.LOC_NAMES),), ner="LOC")

    def common(self, nouns, *, allow_num: bool = False, p_adj: float | None = None) -> NP:
        num = None
        if allow_num and self.rng.random() < self.p_num:
            num = self.rng.randint(2, 99)
        det = (
            None
            if num is not None
            else self.rng.choice(lx.DETERMINERS[:3] if nouns is lx.OBJECTS else lx.DETERMINERS[:2])
        )
        adjs = (
            (self.rng.choice(lx.ADJECTIVES),)
            if self.rng.random() < (self.p_adj if p_adj is None else p_adj)
            else ()
        )
        return NP(noun=self.rng.choice(nouns), det=det, adjs=adjs, num=num)

    def agent(self, allow_pron: bool = False) -> NP:
        r = self.rng.random()
        if allow_pron and r < 0.1:
            return NP(det=None, pron=self.rng.choice(lx.PRONOUNS))
        if r < self.p_name:
            return self.person()
        return self.common(lx.AGENTS)

    def location(self) -> PP:
        np = self.place_name() if self.rng.random() < 0.3 else self.common(lx.PLACES, p_adj=0.15)
        return PP(self.rng.choice(lx.PREPOSITIONS), np)

    def transitive(
        self, *, p_loc: float = 0.6, p_time: float = 0.4, social: bool = False, neg: bool = False
    ) -> Clause:
        if social:
            verb = self.rng.choice(sorted(lx.SOCIAL_VERBS.values()))
            patient = self.agent()
        else:
            verb = self.rng.choice(sorted(lx.VERBS.values()))
            patient = self.common(lx.OBJECTS, allow_num=True)
        pps = (self.location(),) if self.rng.random() < p_loc else ()
        time = self.rng.choice(lx.TIME_ADVERBS) if self.rng.random() < p_time else None
        return Clause(self.agent(), verb, patient, pps, time, neg)

    def intransitive_named(self) -> Clause:
        """'Maria Lopez worked for Acme Bank in Paris' style clauses (dense in names, for NER)."""
        verb = self.rng.choice(sorted(lx.INTRANSITIVE.values()))
        pps: tuple[PP, ...] = ()
        if verb == "work" or self.rng.random() < 0.3:
            pps += (PP("for", self.org(), role="org"),)
        if self.rng.random() < 0.8:
            pps += (PP(self.rng.choice(("in", "near")), self.place_name()),)
        return Clause(self.person(), verb, None, pps, None, self.rng.random() < 0.15)


# ---------------------------------------------------------------------------------------------- rendering
def np_tokens(np: NP, lang: Language, role: str) -> list[Tok]:
    if np.wh:
        return [Tok("lex", np.wh, "PRON", role=role)]
    if np.pron:
        return [Tok("lex", np.pron, "PRON", role=role)]
    if np.name:
        return [
            Tok("name", t, "PROPN", ner=("B-" if i == 0 else "I-") + str(np.ner), role=role)
            for i, t in enumerate(np.name)
        ]
    toks: list[Tok] = []
    if np.det:
        toks.append(Tok("lex", np.det, "DET", role=role))
    if np.num is not None:
        toks.append(Tok("num", str(np.num), "NUM", role=role))
    adjs = [Tok("lex", a, "ADJ", role=role) for a in np.adjs]
    noun = Tok("lex", str(np.noun), "NOUN", morph="PL" if (np.num or 1) > 1 else None, role=role)
    toks += adjs + [noun] if lang.adj == "pre" else [noun] + adjs
    return toks


def pp_tokens(pp: PP, lang: Language, role: str) -> list[Tok]:
    prep = Tok("lex", pp.prep, "ADP", role=role)
    inner = np_tokens(pp.np, lang, role)
    return [prep, *inner] if lang.adp == "pre" else [*inner, prep]


def verb_tokens(clause: Clause, lang: Language) -> list[Tok]:
    if not clause.neg:
        return [Tok("lex", clause.verb, "VERB", morph="PAST", role="verb")]
    aux = Tok("lex", "did", "AUX", role="verb")
    neg = Tok("lex", "not", "PART", role="verb")
    verb = Tok("lex", clause.verb, "VERB", role="verb")
    return [aux, neg, verb] if lang.order == "SVO" else [neg, verb, aux]


def linearize(clause: Clause, lang: Language, *, final_punct: str | None = ".") -> list[Tok]:
    agent = np_tokens(clause.agent, lang, "agent")
    patient = np_tokens(clause.patient, lang, "patient") if clause.patient else []
    pps = [pp_tokens(pp, lang, f"pp{i}") for i, pp in enumerate(clause.pps)]
    time = [Tok("lex", clause.time, "ADV", role="time")] if clause.time else []
    verb = verb_tokens(clause, lang)
    front: list[Tok] = []
    if clause.front == "time" and time:
        front, time = time + [Tok("punct", ",", "PUNCT")], []
    elif clause.front == "pp" and pps:
        front, pps = pps[0] + [Tok("punct", ",", "PUNCT")], pps[1:]
    flat_pps = [t for pp in pps for t in pp]
    if lang.order == "SVO":
        toks = front + agent + verb + patient + flat_pps + time
    else:
        toks = front + agent + time + flat_pps + patient + verb
    if final_punct:
        toks.append(Tok("punct", final_punct, "PUNCT"))
    return toks


def coordinate(a: list[Tok], b: list[Tok], conj: str = "and") -> list[Tok]:
    """Join two linearised clauses: drop a's final punctuation, add the conjunction."""
    head = a[:-1] if a and a[-1].kind == "punct" else a
    return head + [Tok("lex", conj, "CCONJ")] + b


def realize(
    toks: list[Tok],
    lang: Language,
    *,
    rng: random.Random | None = None,
    switch_p: float = 0.0,
    switch_langs: tuple[str, ...] = (),
) -> list[str]:
    """Words of `toks` in `lang`; with `switch_p`, each lexical word is replaced by its translation in a random
    language of `switch_langs` (code-switching, for the pretraining corpus)."""
    words = []
    for t in toks:
        if t.kind != "lex":
            words.append(t.lemma)
            continue
        use = lang
        if switch_p and rng is not None and rng.random() < switch_p:
            use = LANGUAGES[rng.choice(switch_langs)]
        words.append(use.form(t.lemma, t.morph))
    return words


def detokenize(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join words with spaces, no space before . , ? ; returns the text and each word's (start, end) chars."""
    text, spans = "", []
    for i, w in enumerate(words):
        if i and w not in {".", ",", "?"}:
            text += " "
        spans.append((len(text), len(text) + len(w)))
        text += w
    return text, spans
