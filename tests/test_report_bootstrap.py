"""The paired bootstrap of `xtuner report` on constructed predictions with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from report_runs import correct_vector

from xtuner.analysis.report.bootstrap import align, paired_bootstrap
from xtuner.errors import XtunerError


def acc(correct: np.ndarray, ids=None) -> pd.DataFrame:
    ids = ids if ids is not None else [str(i) for i in range(len(correct))]
    return pd.DataFrame({"id": ids, "correct": np.asarray(correct, dtype=np.int8)})


def test_identical_systems_have_p_one() -> None:
    c = correct_vector(300, 0.6, 1)
    delta, p, n = paired_bootstrap("accuracy", [acc(c)], [acc(c.copy())])
    assert delta == 0.0 and p == 1.0 and n == 300


def test_a_large_true_difference_is_significant() -> None:
    a, b = correct_vector(300, 0.8, 1), correct_vector(300, 0.5, 2)
    delta, p, _ = paired_bootstrap("accuracy", [acc(a)], [acc(b)])
    assert delta == pytest.approx(30.0)
    assert p < 0.05
    assert p == pytest.approx(2 / 1001)  # no resample reaches zero: the smallest p B = 1000 can give


def test_a_difference_within_noise_is_not_marked() -> None:
    b = correct_vector(200, 0.6, 3)
    a = b.copy()
    wrong = np.flatnonzero(a == 0)
    a[wrong[:2]] = 1  # A fixes two of B's 80 errors: +1 point, well within the noise of 200 examples
    a[np.flatnonzero(b == 1)[:1]] = 0  # and breaks one
    delta, p, _ = paired_bootstrap("accuracy", [acc(a)], [acc(b)])
    assert delta == pytest.approx(0.5)
    assert p > 0.05


def test_direction_does_not_change_p() -> None:
    a, b = correct_vector(150, 0.7, 4), correct_vector(150, 0.62, 5)
    d1, p1, _ = paired_bootstrap("accuracy", [acc(a)], [acc(b)], seed=7)
    d2, p2, _ = paired_bootstrap("accuracy", [acc(b)], [acc(a)], seed=7)
    assert d1 == pytest.approx(-d2) and p1 == pytest.approx(p2)


def test_seeds_are_pooled_on_the_same_examples() -> None:
    a = [acc(correct_vector(200, 0.75, s)) for s in (1, 2, 3)]
    b = [acc(correct_vector(200, 0.55, 10 + s)) for s in (1, 2)]  # unequal seed counts are fine
    delta, p, n = paired_bootstrap("accuracy", a, b)
    assert n == 200 and delta == pytest.approx(20.0) and p < 0.05


def test_span_f1_is_rescored_from_counts() -> None:
    # F1 over spans is not a mean of per-sentence F1s: the bootstrap sums tp / n_pred / n_gold of a draw
    a = pd.DataFrame({"id": list("abcd"), "tp": [2, 0, 1, 3], "n_pred": [2, 1, 1, 3], "n_gold": [2, 2, 1, 3]})
    b = pd.DataFrame({"id": list("abcd"), "tp": [1, 0, 1, 3], "n_pred": [2, 1, 1, 3], "n_gold": [2, 2, 1, 3]})
    delta, p, _ = paired_bootstrap("span_f1", [a], [b], resamples=200)
    assert delta == pytest.approx(100 * 2 * 6 / 15 - 100 * 2 * 5 / 15)  # 7 predicted + 8 gold spans
    assert 0 < p <= 1
    assert paired_bootstrap("span_f1", [a], [a.copy()], resamples=200)[1] == 1.0


def test_align_matches_examples_by_id() -> None:
    c = correct_vector(50, 0.5, 6)
    ids = [f"x{i}" for i in range(50)]
    shuffled = acc(c, ids).sample(frac=1.0, random_state=0)
    (a, b), dropped = align([acc(c, ids), shuffled.iloc[:45]])
    assert (
        dropped == 5 and list(a["id"]) == list(b["id"]) and (a["correct"].values == b["correct"].values).all()
    )


def test_bad_input() -> None:
    with pytest.raises(XtunerError, match="not aligned"):
        paired_bootstrap("accuracy", [acc([1, 0])], [acc([1, 0, 1])])
    with pytest.raises(XtunerError, match="unknown statistic kind"):
        paired_bootstrap("bleu", [acc([1])], [acc([1])])
