"""The on-disk tokenisation cache: hits, misses on every key ingredient, corruption detection and rebuild,
concurrent builders, and the default location."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import datasets
import pytest

from xtuner.data import cache as cache_mod
from xtuner.data.cache import (
    cached_prepare,
    cached_tokenize,
    default_cache_dir,
    path_fingerprint,
    tokenizer_fingerprint,
)
from xtuner.data.preprocess import tokenize_split
from xtuner.data.toy_tokenizer import build_toy_tokenizer
from xtuner.metrics import accuracy
from xtuner.tasks.base import HeadType, Task
from xtuner.tasks.schemas import NLI_LABELS, XNLI_FEATURES

WORDS = ["the", "a", "quick", "brown", "fox", "dog", "jumps", "over", "lazy", "cat", "sleeps"]


def raw_data(n: int = 40, extra: str = "") -> datasets.Dataset:
    prem = [" ".join(WORDS[: 1 + i % len(WORDS)]) + extra for i in range(n)]
    hyp = [" ".join(WORDS[i % 5 :]) for i in range(n)]
    return datasets.Dataset.from_dict(
        {"premise": prem, "hypothesis": hyp, "label": [i % 3 for i in range(n)]}, features=XNLI_FEATURES
    )


TASK = Task(name="t-xnli", head=HeadType.SEQUENCE_CLASSIFICATION, languages=("en",), features=XNLI_FEATURES,
            loader=lambda split, lang, ctx: raw_data(), metric=accuracy, main_metric="accuracy",
            inputs=("premise", "hypothesis"), label_column="label", labels=NLI_LABELS)  # fmt: skip


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_toy_tokenizer(WORDS, tmp_path_factory.mktemp("tok"))


class Loader:
    """A ds_loader that counts its calls."""

    def __init__(self, ds: datasets.Dataset) -> None:
        self.ds, self.calls = ds, 0

    def __call__(self) -> datasets.Dataset:
        self.calls += 1
        return self.ds


def run(tok, cache_dir: Path, loader=None, max_length: int = 32, **kw):
    return cached_tokenize(TASK, "train", "en", loader or Loader(raw_data()), tok, max_length=max_length,
                           doc_stride=8, train=True, cache_dir=cache_dir, **kw)  # fmt: skip


def entries(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.iterdir() if not p.name.startswith("."))


def test_second_call_hits_and_returns_identical_data(tok, tmp_path):
    first, hit1 = run(tok, tmp_path)
    second, hit2 = run(tok, tmp_path)
    assert (hit1, hit2) == (False, True)
    assert second.to_dict() == first.to_dict()
    expected = tokenize_split(TASK, raw_data(), tok, max_length=32, doc_stride=8, train=True)
    assert second.to_dict() == expected.to_dict() and second.features == expected.features
    assert len(entries(tmp_path)) == 1 and not list(tmp_path.glob(".tmp-*"))
    manifest = json.loads((entries(tmp_path)[0] / cache_mod.MANIFEST).read_text())
    assert manifest["num_rows"] == 40 and manifest["key"]["max_length"] == 32


def test_every_key_ingredient_makes_a_miss(tok, tmp_path):
    run(tok, tmp_path)
    assert run(tok, tmp_path, max_length=24)[1] is False
    assert run(tok, tmp_path, loader=Loader(raw_data(extra=" dog")))[1] is False  # raw data changed
    other = cached_tokenize(TASK, "validation", "en", Loader(raw_data()), tok, max_length=32, doc_stride=8,
                            train=False, cache_dir=tmp_path)  # fmt: skip
    assert other[1] is False
    assert len(entries(tmp_path)) == 4
    for ml in (32, 24):
        assert run(tok, tmp_path, max_length=ml)[1] is True


def test_tokenizer_change_is_a_miss(tok, tmp_path):
    cache = tmp_path / "cache"
    run(tok, cache)
    # same words in another order: a different vocabulary (different token ids)
    tok2 = build_toy_tokenizer(WORDS[::-1], tmp_path / "tok2")
    ds2, hit = run(tok2, cache)
    assert tokenizer_fingerprint(tok2) != tokenizer_fingerprint(tok)
    assert hit is False and run(tok2, cache)[1] is True and run(tok, cache)[1] is True
    assert len(entries(cache)) == 2
    assert list(ds2["input_ids"]) != list(run(tok, cache)[0]["input_ids"])
    # one extra sub-word piece is a different tokenizer too, even where no token id changes here
    assert tokenizer_fingerprint(
        build_toy_tokenizer(WORDS, tmp_path / "tok4", pieces=["ck"])
    ) != tokenizer_fingerprint(tok)
    # a reloaded copy of the same tokenizer, and the same one after truncating calls, keep their fingerprint
    tok_again = build_toy_tokenizer(WORDS, tmp_path / "tok3")
    before = tokenizer_fingerprint(tok_again)
    tok_again(["the dog"] * 2, truncation=True, max_length=3, padding="max_length")
    assert tokenizer_fingerprint(tok_again) == before == tokenizer_fingerprint(tok)


def test_data_key_skips_the_loader_on_a_hit(tok, tmp_path):
    loader = Loader(raw_data())
    run(tok, tmp_path, loader=loader, data_key="synthetic-v1")
    ds, hit = run(tok, tmp_path, loader=loader, data_key="synthetic-v1")
    assert hit and loader.calls == 1 and ds.num_rows == 40
    assert run(tok, tmp_path, loader=loader, data_key="synthetic-v2")[1] is False and loader.calls == 2
    # without a data_key the loader runs every time (its fingerprint is part of the key)
    fp_loader = Loader(raw_data())
    run(tok, tmp_path, loader=fp_loader)
    run(tok, tmp_path, loader=fp_loader)
    assert fp_loader.calls == 2


def test_cached_prepare_keeps_the_raw_split(tok, tmp_path):
    raw = raw_data()
    loader = Loader(raw)
    kw = {"max_length": 32, "doc_stride": 8, "train": False, "cache_dir": tmp_path, "data_key": "v1"}
    raw1, feats1, hit1 = cached_prepare(TASK, "test", "en", loader, tok, **kw)
    raw2, feats2, hit2 = cached_prepare(TASK, "test", "en", loader, tok, **kw)
    assert (hit1, hit2) == (False, True) and loader.calls == 1
    assert raw2.to_dict() == raw.to_dict() and raw2.features == raw.features
    assert feats2.to_dict() == feats1.to_dict()
    # a features-only entry of the same split is a different entry (it has no raw copy to return)
    assert cached_tokenize(TASK, "test", "en", loader, tok, **kw)[1] is False
    # a damaged raw copy is caught like damaged features
    _corrupt_truncate(next(p for p in entries(tmp_path) if (p / "raw").is_dir()) / "raw")
    raw3, _, hit3 = cached_prepare(TASK, "test", "en", loader, tok, **kw)
    assert hit3 is False and raw3.to_dict() == raw.to_dict()


def _corrupt_delete(entry: Path) -> None:
    next(entry.glob("*.arrow")).unlink()


def _corrupt_truncate(entry: Path) -> None:
    arrow = next(entry.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])


def _corrupt_flip(entry: Path) -> None:  # same size, one byte changed: only the checksum sees it
    arrow = next(entry.glob("*.arrow"))
    data = bytearray(arrow.read_bytes())
    data[-200] ^= 0xFF
    arrow.write_bytes(bytes(data))


def _corrupt_manifest(entry: Path) -> None:
    (entry / cache_mod.MANIFEST).unlink()


def _corrupt_state(entry: Path) -> None:
    (entry / "state.json").write_text("{not json")


@pytest.mark.parametrize("corrupt", [_corrupt_delete, _corrupt_truncate, _corrupt_flip, _corrupt_manifest,
                                     _corrupt_state])  # fmt: skip
def test_corrupt_entry_is_detected_and_rebuilt(tok, tmp_path, caplog, corrupt):
    good, _ = run(tok, tmp_path)
    good = good.to_dict()
    corrupt(entries(tmp_path)[0])
    with caplog.at_level(logging.WARNING, logger="xtuner.data.cache"):
        ds, hit = run(tok, tmp_path)
    assert hit is False  # never used silently
    assert "corrupt" in caplog.text
    assert ds.to_dict() == good
    assert run(tok, tmp_path)[1] is True  # the rebuilt entry is sound
    assert len(entries(tmp_path)) == 1 and not list(tmp_path.glob(".tmp-*"))


def test_leftover_tmp_dir_is_ignored(tok, tmp_path):
    ds, _ = run(tok, tmp_path)
    name = entries(tmp_path)[0].name
    ds.select(range(3)).save_to_disk(str(tmp_path / f".tmp-{name}-deadbeef"))  # a crashed half build
    (tmp_path / name).rename(tmp_path / ".moved")
    ds2, hit = run(tok, tmp_path)
    assert hit is False and ds2.num_rows == 40


def test_concurrent_builders_publish_one_entry(tok, tmp_path):
    results, errors = [], []

    def worker() -> None:
        try:
            results.append(run(tok, tmp_path))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(entries(tmp_path)) == 1 and not list(tmp_path.glob(".tmp-*"))
    dicts = [ds.to_dict() for ds, _ in results]
    assert dicts[0] == dicts[1] == dicts[2]
    assert run(tok, tmp_path)[1] is True


def test_default_cache_dir_and_path_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("XTUNER_CACHE", str(tmp_path / "xc"))
    assert default_cache_dir() == tmp_path / "xc" / "tokenized"
    monkeypatch.delenv("XTUNER_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "xtuner" / "tokenized"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.tsv").write_text("x\t1\n")
    before = path_fingerprint(tmp_path / "d")
    assert path_fingerprint(tmp_path / "d") == before
    (tmp_path / "d" / "a.tsv").write_text("x\t1\ny\t2\n")
    assert path_fingerprint(tmp_path / "d") != before
