"""The stage-1 training set: the variant's languages' train splits, budget-matched, shuffled with the seed, and
optionally noised.

Budget (`budget_counts`): ``match_en`` gives the multilingual variant the number of examples the English variant
trains on, split evenly over its languages (the first ``n % k`` languages in sorted order get one more); ``all``
takes every language's whole train set. Which rows (`choose_rows`): when the languages' train sets are parallel
(the same number of rows, as translations of one English set are: the synthetic suite, XNLI's translate-train), one
seeded permutation of the row numbers is cut into consecutive, disjoint chunks, one per language, so that the
multilingual variant sees as many distinct items as the English one, each in one language; otherwise each
language's rows are a seeded sample of its own. The concatenation is shuffled with the seed.

Noise (`noisy`, ``noise: p``) imitates machine translation on the non-English rows, since exact translations would
flatter the multilingual variant: each word is dropped with probability p/2 (never every word), then each pair of
neighbouring words is swapped with probability p/2. Sentence pairs: both texts; tagging: tokens with their tags;
QA: the question only (the context must keep its answer spans). Deterministic in (seed, language, row).
"""

from __future__ import annotations

import random
from typing import Any

import datasets

from xtuner.synth.languages import stable_hash
from xtuner.tasks.base import HeadType, LoadContext, Task


def budget_counts(n_en: int, sizes: dict[str, int], budget: str) -> dict[str, int]:
    """Rows per language: ``all`` = every row; ``match_en`` = `n_en` split evenly (capped at a language's size)."""
    langs = sorted(sizes)
    if budget == "all":
        return {lang: sizes[lang] for lang in langs}
    k = len(langs)
    return {lang: min(sizes[lang], n_en // k + (i < n_en % k)) for i, lang in enumerate(langs)}


def choose_rows(sizes: dict[str, int], counts: dict[str, int], seed: int) -> dict[str, list[int]]:
    """Row numbers per language (see the module doc): disjoint chunks of one permutation when the sets are
    parallel and the chunks fit, else a seeded sample per language."""
    langs = sorted(counts)
    rng = random.Random(stable_hash("intermediate-rows", seed))
    same = len(set(sizes[lang] for lang in langs)) == 1
    if same and sum(counts.values()) <= sizes[langs[0]]:
        order = list(range(sizes[langs[0]]))
        rng.shuffle(order)
        out, start = {}, 0
        for lang in langs:
            out[lang] = sorted(order[start : start + counts[lang]])
            start += counts[lang]
        return out
    out = {}
    for lang in langs:
        order = list(range(sizes[lang]))
        random.Random(stable_hash("intermediate-rows", seed, lang)).shuffle(order)
        out[lang] = sorted(order[: counts[lang]])
    return out


def _words(text: str, rng: random.Random, p: float) -> str:
    return " ".join(_noise_seq(text.split(), rng, p))


def _noise_seq(items: list[Any], rng: random.Random, p: float) -> list[Any]:
    if p <= 0 or len(items) < 2:
        return list(items)
    kept = [x for x in items if rng.random() >= p / 2] or [items[rng.randrange(len(items))]]
    for i in range(len(kept) - 1):
        if rng.random() < p / 2:
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return kept


def noisy(ds: datasets.Dataset, task: Task, p: float, seed: int, lang: str) -> datasets.Dataset:
    """`ds` with MT-like noise of strength `p` (module doc); unchanged for p == 0."""
    if p <= 0:
        return ds

    def fn(row: dict[str, Any], i: int) -> dict[str, Any]:
        rng = random.Random(stable_hash("intermediate-noise", seed, lang, i))
        if task.head == HeadType.TOKEN_CLASSIFICATION:
            cols = [c for c in ds.column_names if c != "tokens" and isinstance(row[c], list)]
            pairs = _noise_seq(list(zip(row["tokens"], *(row[c] for c in cols), strict=True)), rng, p)
            out = {"tokens": [t[0] for t in pairs]}
            out.update({c: [t[j + 1] for t in pairs] for j, c in enumerate(cols)})
            return out
        if task.head == HeadType.EXTRACTIVE_QA:
            return {"question": _words(row["question"], rng, p)}
        return {c: _words(row[c], rng, p) for c in task.inputs}

    return ds.map(fn, with_indices=True, features=ds.features)


def stage1_rows(task: Task, languages: list[str], *, budget: str, max_en: int | None, noise: float, seed: int,
                ctx: LoadContext) -> tuple[datasets.Dataset, dict[str, int]]:  # fmt: skip
    """The stage-1 training rows (task schema) and how many come from each language."""
    src = task.source_lang
    en = task.load("train", src, ctx)
    n_en = min(len(en), max_en) if max_en else len(en)
    loaded = {lang: (en if lang == src else task.load("train", lang, ctx)) for lang in languages}
    sizes = {lang: len(ds) for lang, ds in loaded.items()}
    if languages == [src]:
        counts = {src: n_en}
    else:
        counts = budget_counts(n_en, sizes, budget)
        if budget == "all" and max_en:
            counts = {lang: min(n, max_en) for lang, n in counts.items()}
    rows = choose_rows(sizes, counts, seed)
    parts = []
    for lang in sorted(rows):
        part = loaded[lang].select(rows[lang])
        parts.append(part if lang == src else noisy(part, task, noise, seed, lang))
    out = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    return out.shuffle(seed=seed).flatten_indices(), counts
