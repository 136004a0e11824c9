"""The representation analysis: its numbers on hand-made vectors with known answers (identical, permuted,
orthogonal), parallel alignment by id, and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xtuner.analysis.representations.data import Table, align, load_parallel
from xtuner.analysis.representations.maths import alignment, average
from xtuner.errors import XtunerError
from xtuner.tasks import LoadContext, get_task


def _half(n: int) -> np.ndarray:
    """Rows whose cosines are 1 with themselves and exactly 1/2 with every other row: [I | 1]."""
    return np.concatenate([np.eye(n), np.ones((n, 1))], axis=1)


def test_identical_vectors() -> None:
    e = _half(6)
    m = alignment(e, e * 5.0, labels=np.array([0, 0, 0, 1, 1, 1]))  # scale does not matter
    assert m["pos"] == pytest.approx(100.0) and m["neg"] == pytest.approx(50.0)
    assert m["neg_difflabel"] == pytest.approx(50.0) and m["neg_random"] == pytest.approx(50.0)
    assert m["rel_diff"] == pytest.approx(100.0) and m["rel_diff_random"] == pytest.approx(100.0)
    assert m["acc1_en_to_x"] == 100.0 and m["acc1_x_to_en"] == 100.0


def test_permuted_vectors() -> None:
    e = _half(5)
    perm = [1, 0, 2, 4, 3]  # row 2 is a fixed point
    m = alignment(e, e[perm])
    assert m["pos"] == pytest.approx(100.0 * (1 + 4 * 0.5) / 5)  # only the fixed point is a true translation
    assert m["acc1_en_to_x"] == pytest.approx(20.0) and m["acc1_x_to_en"] == pytest.approx(20.0)
    # off-diagonal: the 4 misplaced translations (cos 1) among 20 pairs of cos 1/2
    assert m["neg"] == pytest.approx(100.0 * (4 * 1.0 + 16 * 0.5) / 20)


def test_orthogonal_vectors() -> None:
    e = np.concatenate([np.eye(4), np.zeros((4, 4))], axis=1)
    t = np.concatenate([np.zeros((4, 4)), np.eye(4)], axis=1)
    m = alignment(e, t)
    assert m["pos"] == 0.0 and m["neg"] == 0.0 and m["neg_random"] == 0.0
    assert math.isnan(m["rel_diff"]) and math.isnan(m["neg_difflabel"])  # no labels given
    assert m["acc1_en_to_x"] == pytest.approx(25.0)  # all ties: the first index, right only for row 0


def test_difflabel_and_random_partner_by_hand() -> None:
    e = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    t = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    m = alignment(e, t, labels=np.array([0, 1, 1]), seed=3)
    s = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5), math.sqrt(0.5)]])
    assert m["pos"] == pytest.approx(100 * (1.0 + 0.0 + math.sqrt(0.5)) / 3)
    assert m["neg_difflabel"] == pytest.approx(100 * (s[0, 1] + s[0, 2] + s[1, 0] + s[2, 0]) / 4)
    partner = (np.arange(3) + np.random.default_rng(3).integers(1, 3, size=3)) % 3
    assert (partner != np.arange(3)).all()
    assert m["neg_random"] == pytest.approx(100 * s[np.arange(3), partner].mean())


def test_average_skips_nan() -> None:
    per = {"a": {"pos": 10.0, "rel_diff": math.nan}, "b": {"pos": 30.0, "rel_diff": 4.0}}
    avg = average(per)
    assert avg["pos"] == 20.0 and avg["rel_diff"] == 4.0 and math.isnan(avg["acc1_en_to_x"])


# ------------------------------------------------------------------------------------------------ alignment
def _table(ids, labels):
    return Table(list(ids), list(labels), [(f"{i}a", f"{i}b") for i in ids])


def test_alignment_by_id_drops_missing_and_unlabelled_rows_everywhere() -> None:
    tables = {
        "en": _table([1, 2, 3, 4, 5, 6], [0, 1, 0, 1, 0, 1]),
        "de": _table([6, 5, 4, 2, 1, 9], [1, 0, -1, 1, 0, 0]),  # 3 missing, 4 unlabelled, another order
        "fr": _table([1, 2, 4, 5, 6, 3], [0, 1, 1, 0, 1, 0]),
    }
    rows = align(tables, "en")
    assert rows.ids == [1, 2, 5, 6] and rows.languages == ["de", "fr"]
    assert rows.labels.tolist() == [0, 1, 0, 1]
    assert rows.pairs["de"] == [("1a", "1b"), ("2a", "2b"), ("5a", "5b"), ("6a", "6b")]  # matched by id, not row
    assert rows.dropped == {"missing": 1, "unlabelled": 1}


def test_alignment_errors() -> None:
    with pytest.raises(XtunerError, match="'de' shares no row id"):
        align({"en": _table([1, 2], [0, 1]), "de": _table([7, 8], [0, 1])}, "en")
    with pytest.raises(XtunerError, match="only 1 row"):
        align({"en": _table([1, 2], [0, -1]), "de": _table([1, 2], [0, 1])}, "en")


def test_load_parallel_synthetic_and_bad_tasks() -> None:
    rows = load_parallel(get_task("synth-pawsx"), ["en", "s2"], LoadContext(), rows=50)
    assert len(rows.ids) == 50 and rows.ids[:3] == [1, 2, 3] and set(rows.pairs) == {"en", "s2"}
    xnli = load_parallel(get_task("synth-xnli"), ["s1"], rows=20)  # no id column: row position
    assert xnli.ids == list(range(20)) and xnli.labels.shape == (20,)
    with pytest.raises(XtunerError, match="not a sentence-pair task"):
        load_parallel(get_task("synth-udpos"), ["s1"])
    with pytest.raises(XtunerError, match="unknown language 'de'"):
        load_parallel(get_task("synth-pawsx"), ["de"])


def test_a_language_without_parallel_rows() -> None:
    from pathlib import Path

    # XTREME's folder has English train and machine-translated train (translate-train) only: the translation's
    # rows are not the English rows by index (the fixture's are other sentences), so they are refused, not paired
    download = Path(__file__).parent / "fixtures" / "xtreme" / "download"
    with pytest.raises(XtunerError, match="no parallel train rows in 'de'.*machine-translated"):
        load_parallel(get_task("pawsx"), ["de"], LoadContext(data_dir=download))
    with pytest.raises(XtunerError, match="no parallel train rows in 'fr'.*missing file"):
        load_parallel(get_task("pawsx"), ["fr"], LoadContext(data_dir=download))


def test_groups_average_seeds_of_one_configuration_only() -> None:
    from xtuner.analysis.representations.subjects import UNTUNED, Subject, assign_groups

    def subject(method: str, seed: int | None, **config) -> Subject:
        cfg = {"task": "synth-xnli", "seed": seed, "method_settings": config.pop("settings", {}), **config}
        return Subject(f"{method} {seed}", method, "m", "synth-xnli", seed, None, None, None,
                       None if method == UNTUNED else cfg)  # fmt: skip

    subjects = [subject(UNTUNED, None), subject("finetune", 1, lr=1e-3), subject("finetune", 2, lr=1e-3),
                subject("finetune", 1, lr=3e-4), subject("deep_prompt", 1, lr=1e-2, settings={"psl": 16}),
                subject("deep_prompt", 2, lr=1e-2, settings={"psl": 16})]  # fmt: skip
    assign_groups(subjects)
    assert [s.group for s in subjects] == ["untuned None", "finetune (lr=0.001)", "finetune (lr=0.001)",
                                          "finetune (lr=0.0003)", "deep_prompt", "deep_prompt"]  # fmt: skip
