"""The tokenisation cache never serves one dataset's rows for another: data keys name the real path and content of
every file a split reads. Runs `run_trial`'s own data step (`setup_trial` + `prepare_data`, no training) on data
folders whose task folders are symlinks, after an edit, a same-size replacement with the old mtime put back, and a
move."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from datasets import Dataset

from xtuner.data.identity import file_identity, path_fingerprint, real_files
from xtuner.trial.run import prepare_data, setup_trial

FIXTURES = Path(__file__).parent / "fixtures" / "xtreme" / "download"
ROWS_B = [("Der Hund schläft.", "Ein Tier ruht.", "entailment"), ("Es schneit.", "Es ist heiß.", "contradiction")]


def _tsv(rows: list[tuple[str, str, str]]) -> bytes:
    return "".join(f"{a}\t{b}\t{c}\r\n" for a, b, c in rows).encode()


def _prepare(data_dir: Path, cache: Path):
    """(test/de premises, cache hits, cache misses) of an xnli trial's data step on `data_dir`."""
    cfg = dict(task="xnli", lr=1e-3, data_dir=str(data_dir), cache_dir=str(cache), languages=["de"])
    data = prepare_data(setup_trial(cfg))
    return data.test["de"].raw["premise"], data.cache_hits, data.cache_misses


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """dirA/xnli -> realA/xnli (the fixture) and dirB/xnli -> realB/xnli (same file names, other test rows)."""
    for name in ("realA", "realB"):
        shutil.copytree(FIXTURES / "xnli", tmp_path / name / "xnli")
    (tmp_path / "realB" / "xnli" / "test-de.tsv").write_bytes(_tsv(ROWS_B))
    for d, real in (("dirA", "realA"), ("dirB", "realB")):
        (tmp_path / d).mkdir()
        (tmp_path / d / "xnli").symlink_to(tmp_path / real / "xnli", target_is_directory=True)
    return tmp_path / "dirA", tmp_path / "dirB", tmp_path / "realB", tmp_path / "cache"


def test_symlinked_folders_edits_same_size_replacements_and_moves_never_share_entries(folders, tmp_path):
    dir_a, dir_b, real_b, cache = folders
    rows_a = [line.split("\t")[0] for line in (FIXTURES / "xnli" / "test-de.tsv").read_text().splitlines()]
    premises_a, _, misses = _prepare(dir_a, cache)
    assert misses == 3 and premises_a[:2] == rows_a[:2] and len(premises_a) == 3
    premises_b, hits, _ = _prepare(dir_b, cache)  # same relative names, other real files: never A's entries
    assert premises_b == [r[0] for r in ROWS_B] and hits == 0
    assert _prepare(dir_a, cache) == (premises_a, 3, 0)  # each folder keeps its own entries
    assert _prepare(dir_b, cache) == (premises_b, 3, 0)

    test_b = real_b / "xnli" / "test-de.tsv"
    test_b.write_bytes(_tsv([*ROWS_B, ("Neu.", "Alt.", "neutral")]))  # an edit
    premises, hits, misses = _prepare(dir_b, cache)
    assert premises[-1] == "Neu." and (hits, misses) == (2, 1)

    before = test_b.stat()
    same_size = _tsv([("Neu.", "Alt.", "neutral"), *ROWS_B])  # same bytes reordered: same size, new content
    assert len(same_size) == before.st_size
    test_b.write_bytes(same_size)
    os.utime(test_b, ns=(before.st_atime_ns, before.st_mtime_ns))  # even with the old mtime put back
    premises, hits, misses = _prepare(dir_b, cache)
    assert premises[0] == "Neu." and (hits, misses) == (2, 1)

    moved = tmp_path / "realB-moved"
    real_b.rename(moved)  # a moved folder: the link now points elsewhere, every key names the new paths
    (dir_b / "xnli").unlink()
    (dir_b / "xnli").symlink_to(moved / "xnli", target_is_directory=True)
    premises, hits, misses = _prepare(dir_b, cache)
    assert premises[0] == "Neu." and (hits, misses) == (0, 3)
    assert _prepare(dir_a, cache) == (premises_a, 3, 0)


def test_local_parquet_replaced_with_the_old_mtime_is_read_again(tmp_path):
    """The local source reads parquet without datasets' builder cache (keyed on path and mtime)."""
    real = tmp_path / "real" / "xnli"
    for split, lang in (("train", "en"), ("validation", "en"), ("test", "de")):
        Dataset.from_dict({"premise": ["p"], "hypothesis": ["h"], "label": [0]}).to_parquet(
            str(real / f"{split}-{lang}.parquet")
        )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "xnli").symlink_to(real, target_is_directory=True)
    cache = tmp_path / "cache"
    assert _prepare(tmp_path / "data", cache)[0] == ["p"]
    test = real / "test-de.parquet"
    before = test.stat()
    Dataset.from_dict({"premise": ["q"], "hypothesis": ["h"], "label": [0]}).to_parquet(str(test))
    os.utime(test, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _prepare(tmp_path / "data", cache)[0] == ["q"]


def test_real_files_follow_symlinked_folders_and_survive_cycles(tmp_path):
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "sub" / "a.tsv").write_text("x\t1\n")
    (real / "sub" / "loop").symlink_to(real, target_is_directory=True)  # a cycle
    data = tmp_path / "data"
    data.mkdir()
    (data / "task").symlink_to(real, target_is_directory=True)
    (data / "b.tsv").symlink_to(real / "sub" / "a.tsv")  # a file link: the same real file
    assert real_files([data]) == [real / "sub" / "a.tsv"]
    # rglob did not descend into the link: the old fingerprint of `data` hashed nothing
    empty = tmp_path / "empty"
    empty.mkdir()
    assert path_fingerprint(data) != path_fingerprint(empty)
    assert path_fingerprint(empty) != path_fingerprint(tmp_path / "other-empty")  # roots are named too
    before = path_fingerprint(data)
    (real / "sub" / "a.tsv").write_text("y\t1\n")  # same size, new content
    assert path_fingerprint(data) != before
    assert file_identity(data / "b.tsv") == file_identity(real / "sub" / "a.tsv")
    assert file_identity(real / "sub" / "a.tsv").startswith(f"{real / 'sub' / 'a.tsv'}|4|")
