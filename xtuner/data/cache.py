"""On-disk tokenisation cache shared by all trials on a machine: tokenize once, memory-map afterwards.

Layout: ``<cache_dir>/<task>-<lang>-<split>-<train|eval>-<key>/`` holds a `Dataset.save_to_disk` copy of the
features, with `cached_prepare` also the raw split in ``raw/``, and ``xtuner_manifest.json`` (every file's size
and sha256, row counts, the key's ingredients). The default `cache_dir` is ``$XTUNER_CACHE/tokenized``, else
``~/.cache/xtuner/tokenized``. Datasets returned are memory-mapped from the entry: do not `.map()` them in
place expecting the entry to stay pristine (datasets writes its own cache files next to the arrow files;
they are not in the manifest and do no harm, but they take disk space).

Cache key: sha256 over (tokenizer fingerprint, task name, language, split, max_length, doc_stride, train flag,
PREPROCESS_VERSION, CACHE_VERSION, data identity, whether the raw split is kept). The tokenizer fingerprint
hashes the class name, the backend tokenizer's JSON (vocabulary, normalizer, pre-tokenizer, post-processor,
added tokens; without the per-call truncation/padding state), the special tokens, padding/truncation side and
model input names. The data identity is `data_key` when the caller gives one (a string naming the raw data
exactly: its source, a reader version, `path_fingerprint(...)` of the files the split reads -- their resolved
real paths and sha256 contents, see `xtuner.data.identity` -- and any row cap; a hit then never calls
`ds_loader`), else the raw dataset's `_fingerprint` (datasets' content/transform hash: always right, but every
call pays the load, which for generated data costs about as much as tokenizing; see bench/P3_P5.md).

Safety: an entry is built in a ``.tmp-*`` directory and renamed into place in one step, so a crash or a
concurrent trial never exposes a half-written entry (when two trials race, the first rename wins and the
other's copy is discarded). On a hit every file is checked against the manifest (size and sha256) and the row
count after loading; a missing, truncated or altered entry is moved aside, deleted and rebuilt, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets

from xtuner.data.identity import path_fingerprint as path_fingerprint  # re-exported
from xtuner.data.preprocess import PREPROCESS_VERSION, tokenize_split
from xtuner.paths import cache_root, file_sha256
from xtuner.tasks.base import Task

log = logging.getLogger(__name__)
MANIFEST = "xtuner_manifest.json"
# bump to retire every existing entry (2: data keys name the real path and content of each file read)
CACHE_VERSION = 2
RAW_SUBDIR = "raw"  # cached_prepare: the raw split, saved inside the entry
STALE_TMP_S = 24 * 3600  # leftovers of crashed builds older than this are removed


def default_cache_dir() -> Path:
    return cache_root() / "tokenized"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of everything in a fast tokenizer that changes its output (see module doc)."""
    h = hashlib.sha256()
    for part in (
        f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
        _stateless_backend_json(tokenizer.backend_tokenizer.to_str()),
        json.dumps(
            {
                "special": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
                "padding_side": tokenizer.padding_side,
                "truncation_side": tokenizer.truncation_side,
                "inputs": list(tokenizer.model_input_names),
            },
            sort_keys=True,
        ),
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


_STATE_KEYS = ("truncation", "padding")  # per-call state that transformers sets on every __call__


def _stateless_backend_json(text: str) -> str:
    """The backend JSON with its truncation/padding state nulled. They are top-level keys serialized right
    after "version"; only they are decoded, because parsing a 250k-piece vocabulary costs about a second."""
    decoder = json.JSONDecoder()
    out, pos = [], 0
    for key in _STATE_KEYS:
        marker = f'"{key}":'
        at = text.find(marker, pos, pos + 200)
        if at < 0:  # unexpected layout: fall back to a full parse
            backend = json.loads(text)
            for k in _STATE_KEYS:
                backend.pop(k, None)
            return json.dumps(backend, sort_keys=True, ensure_ascii=False)
        start = at + len(marker)
        _, end = decoder.raw_decode(text, start)
        out += [text[pos:start], "null"]
        pos = end
    return "".join(out) + text[pos:]


def cache_key(
    task: Task,
    split: str,
    lang: str,
    tokenizer: Any,
    *,
    max_length: int,
    doc_stride: int,
    train: bool,
    data_id: str,
    with_raw: bool = False,
) -> tuple[str, dict[str, Any]]:
    """(entry directory name, the ingredients of its key)."""
    parts = {
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "task": task.name,
        "lang": lang,
        "split": split,
        "max_length": max_length,
        "doc_stride": doc_stride,
        "train": train,
        "preprocess_version": PREPROCESS_VERSION,
        "cache_version": CACHE_VERSION,
        "data": data_id,
        "with_raw": with_raw,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{task.name}-{lang}-{split}-{'train' if train else 'eval'}")
    return f"{readable}-{digest}", parts


def cached_tokenize(
    task: Task,
    split: str,
    lang: str,
    ds_loader: Callable[[], datasets.Dataset],
    tokenizer: Any,
    *,
    max_length: int,
    doc_stride: int,
    train: bool,
    cache_dir: Path | None = None,
    data_key: str | None = None,
) -> tuple[datasets.Dataset, bool]:
    """Tokenized split from the cache, building it on a miss. Returns (features, cache_hit)."""
    _, features, hit = _cached(
        task, split, lang, ds_loader, tokenizer, max_length=max_length, doc_stride=doc_stride, train=train,
        cache_dir=cache_dir, data_key=data_key, with_raw=False,
    )  # fmt: skip
    return features, hit


def cached_prepare(
    task: Task,
    split: str,
    lang: str,
    ds_loader: Callable[[], datasets.Dataset],
    tokenizer: Any,
    *,
    max_length: int,
    doc_stride: int,
    train: bool,
    cache_dir: Path | None = None,
    data_key: str | None = None,
) -> tuple[datasets.Dataset, datasets.Dataset, bool]:
    """Like `cached_tokenize`, but the entry also keeps the raw split (eval needs it for references and QA
    contexts). Returns (raw, features, cache_hit); with a `data_key` a hit never calls `ds_loader`."""
    raw, features, hit = _cached(
        task, split, lang, ds_loader, tokenizer, max_length=max_length, doc_stride=doc_stride, train=train,
        cache_dir=cache_dir, data_key=data_key, with_raw=True,
    )  # fmt: skip
    assert raw is not None
    return raw, features, hit


def _cached(
    task: Task,
    split: str,
    lang: str,
    ds_loader: Callable[[], datasets.Dataset],
    tokenizer: Any,
    *,
    max_length: int,
    doc_stride: int,
    train: bool,
    cache_dir: Path | None,
    data_key: str | None,
    with_raw: bool,
) -> tuple[datasets.Dataset | None, datasets.Dataset, bool]:
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    raw = None
    if data_key is None:
        raw = ds_loader()
        data_id = f"fingerprint:{raw._fingerprint}"
    else:
        data_id = f"key:{data_key}"
    name, parts = cache_key(
        task, split, lang, tokenizer, max_length=max_length, doc_stride=doc_stride, train=train,
        data_id=data_id, with_raw=with_raw,
    )  # fmt: skip
    entry = cache_dir / name
    if entry.exists():
        loaded = _load_verified(entry, with_raw)
        if loaded is not None:
            return loaded[0], loaded[1], True
        _discard(entry)
    if raw is None:
        raw = ds_loader()
    features = tokenize_split(task, raw, tokenizer, max_length=max_length, doc_stride=doc_stride, train=train)
    _publish(features, raw if with_raw else None, entry, parts)
    loaded = _load_verified(entry, with_raw)
    if loaded is None:  # the entry that won a concurrent race is broken, or the disk is failing
        raise OSError(f"tokenisation cache entry {entry} is unreadable right after it was written")
    return loaded[0], loaded[1], False


def _publish(
    features: datasets.Dataset, raw: datasets.Dataset | None, entry: Path, parts: dict[str, Any]
) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(entry.parent)
    tmp = entry.parent / f".tmp-{entry.name}-{uuid.uuid4().hex[:8]}"
    try:
        features.save_to_disk(str(tmp))
        if raw is not None:
            raw.save_to_disk(str(tmp / RAW_SUBDIR))
        files = {
            str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest = {
            "num_rows": features.num_rows,
            "raw_rows": None if raw is None else raw.num_rows,
            "files": files,
            "key": parts,
            "created": time.time(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        try:
            tmp.rename(entry)  # atomic; fails if another trial published first
        except OSError:
            if not entry.exists():
                raise
            log.info("tokenisation cache: %s was published concurrently; using that copy", entry.name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _load_verified(entry: Path, with_raw: bool) -> tuple[datasets.Dataset | None, datasets.Dataset] | None:
    """(raw or None, features) from the entry, or None (with a warning) when it does not match its manifest."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        for rel, meta in manifest["files"].items():
            p = entry / rel
            if p.stat().st_size != meta["size"] or file_sha256(p) != meta["sha256"]:
                raise ValueError(f"{rel} differs from the manifest")
        features = datasets.load_from_disk(str(entry))
        if features.num_rows != manifest["num_rows"]:
            raise ValueError(f"{features.num_rows} rows, manifest says {manifest['num_rows']}")
        raw = None
        if with_raw:
            raw = datasets.load_from_disk(str(entry / RAW_SUBDIR))
            if raw.num_rows != manifest["raw_rows"]:
                raise ValueError(f"raw split has {raw.num_rows} rows, manifest says {manifest['raw_rows']}")
        return raw, features
    except Exception as e:  # any failure means: do not use this entry
        log.warning(
            "tokenisation cache: entry %s is corrupt (%s: %s); rebuilding", entry, type(e).__name__, e
        )
        return None


def _discard(entry: Path) -> None:
    trash = entry.parent / f".tmp-trash-{entry.name}-{uuid.uuid4().hex[:8]}"
    try:
        entry.rename(trash)  # atomic: nobody loads a half-deleted entry
    except OSError:
        return  # someone else moved or replaced it already
    shutil.rmtree(trash, ignore_errors=True)


def _remove_stale_tmp(cache_dir: Path) -> None:
    now = time.time()
    for p in cache_dir.glob(".tmp-*"):
        try:
            if now - p.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass
