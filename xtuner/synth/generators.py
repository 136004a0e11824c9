"""Task generators of the synthetic suite. Labels come from the clause semantics (see grammar.py).

Every split is generated once as *semantic items* (deterministic from the suite seed, the task and the split)
and rendered in each language, so test sets are parallel across languages, as XNLI and XQuAD are translations
of the same English items. Rows have exactly the hub schema of the real task.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from functools import lru_cache

from xtuner.synth import lexicon as lx
from xtuner.synth.grammar import NP, Clause, Sampler, Tok, coordinate, detokenize, linearize, realize
from xtuner.synth.languages import LANGUAGES, stable_hash

SUITE_SEED = 20221
SPLIT_SIZES = {"train": 4000, "validation": 500, "test": 500}
NLI_LABELS = ("entailment", "neutral", "contradiction")


def _rng(task: str, split: str, seed: int) -> random.Random:
    return random.Random(stable_hash("synth", seed, task, split))


# ------------------------------------------------------------------------------------------------ NLI
@dataclass(frozen=True)
class NLIItem:
    premise: Clause
    hypothesis: Clause
    label: str


def _drop_some(s: Sampler, c: Clause) -> Clause:
    """A clause whose facts are a subset of c's facts (fact inclusion)."""
    agent = replace(c.agent, adjs=()) if c.agent.adjs and s.rng.random() < 0.5 else c.agent
    patient = c.patient
    if patient is not None and patient.adjs and s.rng.random() < 0.5:
        patient = replace(patient, adjs=())
    pps = tuple(pp for pp in c.pps if s.rng.random() < 0.5)
    time = c.time if s.rng.random() < 0.5 else None
    return replace(c, agent=agent, patient=patient, pps=pps, time=time)


def _neutral(s: Sampler, premise: Clause) -> Clause:
    """A hypothesis that keeps every fact of the premise and adds one the premise does not state (a place, a
    time, or a property of the patient): neither entailed nor contradicted."""
    options = []
    if not premise.pps:
        options.append("add_loc")
    if premise.time is None:
        options.append("add_time")
    if premise.patient is not None and not premise.patient.adjs:
        options.append("add_adj")
    if premise.agent.noun and not premise.agent.adjs:
        options.append("add_agent_adj")
    choice = s.rng.choice(options)
    if choice == "add_loc":
        return replace(premise, pps=(s.location(),))
    if choice == "add_time":
        return replace(premise, time=s.rng.choice(lx.TIME_ADVERBS))
    adj = s.rng.choice(lx.ADJECTIVES)
    if choice == "add_adj":
        return replace(premise, patient=replace(premise.patient, adjs=(adj,)))
    return replace(premise, agent=replace(premise.agent, adjs=(adj,)))


def nli_items(split: str, seed: int = SUITE_SEED) -> list[NLIItem]:
    rng = _rng("nli", split, seed)
    s = Sampler(rng)
    items = []
    for i in range(SPLIT_SIZES[split]):
        label = NLI_LABELS[i % 3]
        premise = s.transitive(p_loc=0.5, p_time=0.4)
        while (
            label == "neutral"
            and premise.pps
            and premise.time
            and premise.patient.adjs
            and (premise.agent.adjs or not premise.agent.noun)
        ):  # nothing left to add
            premise = s.transitive(p_loc=0.5, p_time=0.4)
        if label == "entailment":
            hyp = _drop_some(s, premise)
        elif label == "contradiction":
            hyp = replace(_drop_some(s, premise), neg=True)
        else:
            hyp = _neutral(s, premise)
        items.append(NLIItem(premise, hyp, label))
    rng.shuffle(items)
    return items


def nli_rows(split: str, lang: str, seed: int = SUITE_SEED) -> dict[str, list]:
    L = LANGUAGES[lang]
    rows: dict[str, list] = {"premise": [], "hypothesis": [], "label": []}
    for it in _cached("nli", split, seed):
        rows["premise"].append(detokenize(realize(linearize(it.premise, L), L))[0])
        rows["hypothesis"].append(detokenize(realize(linearize(it.hypothesis, L), L))[0])
        rows["label"].append(NLI_LABELS.index(it.label))
    return rows


# ------------------------------------------------------------------------------------------------ PAWS
@dataclass(frozen=True)
class ParaItem:
    s1: Clause
    s2: Clause
    label: int  # 1 = paraphrase


def _swap(s: Sampler, c: Clause) -> Clause:
    """PAWS-style adversarial negative: the same words, a different meaning."""
    kinds = ["roles"]
    if c.agent.adjs != c.patient.adjs and (c.agent.noun and c.patient.noun):
        kinds.append("adjs")
    if kinds[-1] == "adjs" and s.rng.random() < 0.5:
        return replace(
            c, agent=replace(c.agent, adjs=c.patient.adjs), patient=replace(c.patient, adjs=c.agent.adjs)
        )
    return replace(c, agent=c.patient, patient=c.agent)


def para_items(split: str, seed: int = SUITE_SEED) -> list[ParaItem]:
    rng = _rng("paws", split, seed)
    s = Sampler(rng, p_adj=0.6)
    items = []
    for i in range(SPLIT_SIZES[split]):
        c = s.transitive(social=True, p_loc=0.6, p_time=0.6)
        while c.agent == c.patient:
            c = s.transitive(social=True, p_loc=0.6, p_time=0.6)
        fronts = [None] + (["time"] if c.time else []) + (["pp"] if c.pps else [])
        s1 = replace(c, front=rng.choice(fronts))
        label = i % 2
        s2 = c if label else _swap(s, c)
        s2 = replace(s2, front=rng.choice([f for f in fronts if f != s1.front] or fronts))
        items.append(ParaItem(s1, s2, label))
    rng.shuffle(items)
    return items


def para_rows(split: str, lang: str, seed: int = SUITE_SEED) -> dict[str, list]:
    L = LANGUAGES[lang]
    rows: dict[str, list] = {"id": [], "sentence1": [], "sentence2": [], "label": []}
    for i, it in enumerate(_cached("paws", split, seed)):
        rows["id"].append(i + 1)
        rows["sentence1"].append(detokenize(realize(linearize(it.s1, L), L))[0])
        rows["sentence2"].append(detokenize(realize(linearize(it.s2, L), L))[0])
        rows["label"].append(it.label)
    return rows


# ------------------------------------------------------------------------------------------------ tagging
def tagging_clauses(kind: str, split: str, seed: int = SUITE_SEED) -> list[tuple[Clause, Clause | None, str]]:
    """Sentences for UD-POS (kind "pos") and PAN-X (kind "ner"): a clause, optionally coordinated with another."""
    rng = _rng(kind, split, seed)
    s = Sampler(rng, p_name=0.3 if kind == "pos" else 0.6)
    out = []
    for _ in range(SPLIT_SIZES[split]):
        r = rng.random()
        if kind == "ner" and r < 0.5:
            a = s.intransitive_named()
        else:
            a = s.transitive(social=rng.random() < 0.3, neg=rng.random() < 0.2)
            if kind == "pos" and rng.random() < 0.1:
                a = replace(a, agent=NP(det=None, pron=rng.choice(lx.PRONOUNS)))
        b = None
        if rng.random() < 0.2:
            b = s.intransitive_named() if kind == "ner" else s.transitive(p_loc=0.3, p_time=0.2)
        out.append((a, b, rng.choice(("and", "but"))))
    return out


def _tag_tokens(item: tuple[Clause, Clause | None, str], lang: str) -> list[Tok]:
    L = LANGUAGES[lang]
    a, b, conj = item
    toks = linearize(a, L)
    if b is not None:
        toks = coordinate(toks, linearize(b, L), conj)
    return toks


def pos_rows(split: str, lang: str, seed: int = SUITE_SEED) -> dict[str, list]:
    from xtuner.tasks.schemas import UPOS_TAGS

    L = LANGUAGES[lang]
    rows: dict[str, list] = {"tokens": [], "pos_tags": []}
    for item in _cached("pos", split, seed):
        toks = _tag_tokens(item, lang)
        rows["tokens"].append(realize(toks, L))
        rows["pos_tags"].append([UPOS_TAGS.index(t.upos) for t in toks])
    return rows


def ner_rows(split: str, lang: str, seed: int = SUITE_SEED) -> dict[str, list]:
    from xtuner.tasks.schemas import PANX_TAGS

    L = LANGUAGES[lang]
    rows: dict[str, list] = {"tokens": [], "ner_tags": [], "langs": []}
    for item in _cached("ner", split, seed):
        toks = _tag_tokens(item, lang)
        rows["tokens"].append(realize(toks, L))
        rows["ner_tags"].append([PANX_TAGS.index(t.ner) for t in toks])
        rows["langs"].append([lang] * len(toks))
    return rows


# ------------------------------------------------------------------------------------------------ QA
@dataclass(frozen=True)
class QAItem:
    clauses: tuple[Clause, ...]
    target: int  # index of the clause asked about
    role: str  # agent | patient | loc | num


def qa_items(split: str, seed: int = SUITE_SEED) -> list[QAItem]:
    rng = _rng("qa", split, seed)
    s = Sampler(rng, p_num=0.35)
    items = []
    for _ in range(SPLIT_SIZES[split]):
        n = rng.randint(3, 5)
        verbs = rng.sample(sorted(lx.VERBS.values()), n)  # distinct verbs: the question is unambiguous
        clauses = []
        for v in verbs:
            c = s.transitive(p_loc=0.6, p_time=0.3)
            clauses.append(replace(c, verb=v))
        target = rng.randrange(n)
        c = clauses[target]
        roles = ["agent", "patient"] + (["loc"] if c.pps else []) + (["num"] if c.patient.num else [])
        items.append(QAItem(tuple(clauses), target, rng.choice(roles)))
    return items


def _question(c: Clause, role: str, L) -> tuple[list[Tok], str]:
    """The question about one role of clause c, and the role of the answer span in the context.

    Subject questions keep the clause order (who saw the apple?); other questions front the question word with
    do-support in SVO languages (what did the man see?) and keep it in situ, before the verb, in SOV languages."""
    if role == "agent":
        q = replace(c, agent=NP(det=None, wh="who"), pps=(), time=None)
        return linearize(q, L, final_punct="?"), "agent"
    if role == "patient":
        wh = [Tok("lex", "what", "PRON")]
        answer_role = "patient"
    elif role == "loc":
        wh = [Tok("lex", "where", "ADV")]
        answer_role = "pp0"
    else:  # how many <nouns>: the answer is the number
        wh = [
            Tok("lex", "how", "ADV"),
            Tok("lex", "many", "ADJ"),
            Tok("lex", str(c.patient.noun), "NOUN", morph="PL"),
        ]
        answer_role = "num"
    agent = linearize(replace(c, patient=None, pps=(), time=None), L, final_punct=None)
    agent = [t for t in agent if t.role == "agent"]
    did, verb = Tok("lex", "did", "AUX"), Tok("lex", c.verb, "VERB")
    if role == "patient" or role == "num":
        extra = []
    else:
        extra = [
            t
            for t in linearize(replace(c, pps=(), time=None, agent=NP(det=None, pron="he")), L)
            if t.role == "patient"
        ]
    if L.order == "SVO":
        toks = wh + [did] + agent + [verb] + extra
    else:
        toks = agent + extra + wh + [verb, did]
    return toks + [Tok("punct", "?", "PUNCT")], answer_role


def qa_rows(split: str, lang: str, seed: int = SUITE_SEED) -> dict[str, list]:
    L = LANGUAGES[lang]
    rows: dict[str, list] = {"id": [], "title": [], "context": [], "question": [], "answers": []}
    for i, it in enumerate(_cached("qa", split, seed)):
        words: list[str] = []
        roles: list[str] = []
        kinds: list[str] = []
        for j, c in enumerate(it.clauses):
            toks = linearize(c, L)
            words += realize(toks, L)
            roles += [f"{j}:{t.role}" for t in toks]
            kinds += [t.kind + ":" + t.upos for t in toks]
        context, spans = detokenize(words)
        qtoks, ans_role = _question(it.clauses[it.target], it.role, L)
        question = detokenize(realize(qtoks, L))[0]
        if ans_role == "num":
            idx = [k for k, r in enumerate(roles) if r == f"{it.target}:patient" and kinds[k] == "num:NUM"]
        elif ans_role == "pp0":  # the location phrase without its adposition
            idx = [
                k for k, r in enumerate(roles) if r == f"{it.target}:pp0" and not kinds[k].endswith(":ADP")
            ]
        else:
            idx = [k for k, r in enumerate(roles) if r == f"{it.target}:{ans_role}"]
        start, end = spans[idx[0]][0], spans[idx[-1]][1]
        rows["id"].append(f"synth-{split}-{i}")
        rows["title"].append(f"synth-{i // 10}")
        rows["context"].append(context)
        rows["question"].append(question)
        rows["answers"].append({"text": [context[start:end]], "answer_start": [start]})
    return rows


# ------------------------------------------------------------------------------------------------ cache
_ITEMS = {"nli": nli_items, "paws": para_items, "qa": qa_items}


@lru_cache(maxsize=64)
def _cached(kind: str, split: str, seed: int):
    if kind in ("pos", "ner"):
        return tagging_clauses(kind, split, seed)
    return _ITEMS[kind](split, seed)


__all__ = ["NLI_LABELS", "SPLIT_SIZES", "nli_items", "nli_rows", "para_items", "para_rows", "pos_rows",
           "ner_rows", "qa_items", "qa_rows", "tagging_clauses"]  # fmt: skip
