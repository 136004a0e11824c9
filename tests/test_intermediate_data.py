"""The stage-1 training set: the budget split, disjoint items across parallel languages, the seed's shuffle, and the
MT-like noise (non-English rows only, tags kept aligned), on the synthetic suite's real generated data."""

from __future__ import annotations

from xtuner.intermediate.data import budget_counts, choose_rows, noisy, stage1_rows
from xtuner.tasks import LoadContext, get_task


def test_match_en_splits_the_english_budget_evenly() -> None:
    sizes = {"en": 4000, "s1": 4000, "s3": 4000}
    assert budget_counts(100, sizes, "match_en") == {"en": 34, "s1": 33, "s3": 33}
    assert sum(budget_counts(4000, sizes, "match_en").values()) == 4000
    assert budget_counts(100, sizes, "all") == sizes
    assert budget_counts(100, {"en": 4000, "de": 10}, "match_en") == {
        "en": 50,
        "de": 10,
    }  # capped at its size


def test_parallel_languages_get_disjoint_items() -> None:
    sizes = dict.fromkeys(("en", "s1", "s3"), 300)
    rows = choose_rows(sizes, {"en": 100, "s1": 100, "s3": 100}, seed=1)
    assert [len(rows[k]) for k in sorted(rows)] == [100, 100, 100]
    assert len(set(rows["en"]) | set(rows["s1"]) | set(rows["s3"])) == 300  # each item in one language only
    assert rows == choose_rows(sizes, {"en": 100, "s1": 100, "s3": 100}, seed=1)
    assert rows != choose_rows(sizes, {"en": 100, "s1": 100, "s3": 100}, seed=2)
    uneven = choose_rows({"en": 300, "de": 200}, {"en": 50, "de": 50}, seed=1)  # not parallel: own samples
    assert len(uneven["de"]) == 50 and max(uneven["de"]) < 200


def test_stage1_rows_of_each_variant() -> None:
    task, ctx = get_task("synth-xnli"), LoadContext()
    en, counts = stage1_rows(task, ["en"], budget="match_en", max_en=90, noise=0.0, seed=1, ctx=ctx)
    assert len(en) == 90 and counts == {"en": 90}
    multi, counts = stage1_rows(
        task, ["en", "s1", "s3"], budget="match_en", max_en=90, noise=0.0, seed=1, ctx=ctx
    )
    assert len(multi) == 90 and counts == {"en": 30, "s1": 30, "s3": 30}
    full, counts = stage1_rows(task, ["en", "s1"], budget="all", max_en=None, noise=0.0, seed=1, ctx=ctx)
    assert counts == {"en": 4000, "s1": 4000} and len(full) == 8000
    # shuffled with the seed: the languages are interleaved, and another seed gives another order
    en_rows = set(task.load("train", "en", ctx)["premise"])
    first = ["en" if p in en_rows else "x" for p in multi["premise"][:30]]
    assert 0 < first.count("en") < 30
    again, _ = stage1_rows(task, ["en", "s1", "s3"], budget="match_en", max_en=90, noise=0.0, seed=2, ctx=ctx)
    assert again["premise"] != multi["premise"]


def test_noise_touches_translations_only_and_keeps_tags_aligned() -> None:
    task, ctx = get_task("synth-xnli"), LoadContext()
    clean, _ = stage1_rows(task, ["en", "s1"], budget="match_en", max_en=200, noise=0.0, seed=1, ctx=ctx)
    noised, _ = stage1_rows(task, ["en", "s1"], budget="match_en", max_en=200, noise=0.4, seed=1, ctx=ctx)
    en_rows = set(task.load("train", "en", ctx)["premise"])
    changed = [a != b for a, b in zip(clean["premise"], noised["premise"], strict=True)]
    is_en = [p in en_rows for p in clean["premise"]]
    assert not any(c for c, e in zip(changed, is_en, strict=True) if e)  # English rows untouched
    assert sum(c for c, e in zip(changed, is_en, strict=True) if not e) > 50  # most translations degraded
    assert clean["label"] == noised["label"]
    tags = get_task("synth-panx")
    ds = tags.load("train", "s2", ctx).select(range(50))
    out = noisy(ds, tags, 0.5, seed=1, lang="s2")
    assert out["tokens"] != ds["tokens"]
    for before, after in zip(ds, out, strict=True):  # every kept token keeps its own tag
        pairs = set(zip(before["tokens"], before["ner_tags"], strict=True))
        assert len(after["tokens"]) == len(after["ner_tags"]) >= 1
        assert set(zip(after["tokens"], after["ner_tags"], strict=True)) <= pairs
    assert noisy(ds, tags, 0.5, seed=1, lang="s2")["tokens"] == out["tokens"]  # deterministic
