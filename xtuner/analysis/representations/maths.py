"""The alignment numbers of the representation analysis, from two row-aligned sets of sentence vectors.

For one language L (not English), with row-normalised English vectors E and L vectors T over the same N parallel
rows and S = E Tᵀ (cosines):

- ``pos`` = 100 · mean(diag S): parallel pairs;
- ``neg`` = 100 · mean(off-diagonal S): every non-parallel pair;
- ``neg_difflabel`` = 100 · mean(S[i, j]) over the pairs whose labels differ (so i ≠ j);
- ``neg_random`` = 100 · mean(S[i, π(i)]) with one seeded random partner π(i) ≠ i per row;
- ``rel_diff`` = 100 · (pos − neg) / neg, and ``rel_diff_difflabel``, ``rel_diff_random`` with the other negatives
  (NaN when the negative is 0);
- ``acc1_en_to_x``: the share of English rows whose most similar L row is their translation (argmax over S's row),
  and ``acc1_x_to_en`` the other way (argmax over S's column); ties go to the first index.

Tu et al. (2022) publish pos/neg pairs and a relative difference on a 0–100 scale but not their exact formulas
(salesforce/MPT saves the vectors; the maths was done offline), so every candidate definition is reported.
"""

from __future__ import annotations

import math

import numpy as np

METRICS = ("pos", "neg", "neg_difflabel", "neg_random", "rel_diff", "rel_diff_difflabel", "rel_diff_random",
           "acc1_en_to_x", "acc1_x_to_en")  # fmt: skip


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _rel(pos: float, neg: float) -> float:
    return 100.0 * (pos - neg) / neg if neg != 0 else math.nan


def alignment(english: np.ndarray, other: np.ndarray, labels: np.ndarray | None = None, *,
              seed: int = 0) -> dict[str, float]:  # fmt: skip
    """The numbers above for one language; rows of `english` and `other` are translations of each other."""
    if english.shape != other.shape or english.ndim != 2:
        raise ValueError(f"expected two [N, H] arrays of one shape, got {english.shape} and {other.shape}")
    n = english.shape[0]
    if n < 2:
        raise ValueError("need at least 2 parallel rows")
    s = _unit(english) @ _unit(other).T
    diag = np.diag(s)
    pos = 100.0 * float(diag.mean())
    neg = 100.0 * float((s.sum() - diag.sum()) / (n * (n - 1)))
    if labels is not None:
        labels = np.asarray(labels)
        differ = labels[:, None] != labels[None, :]
        neg_diff = 100.0 * float(s[differ].mean()) if differ.any() else math.nan
    else:
        neg_diff = math.nan
    partner = (np.arange(n) + np.random.default_rng(seed).integers(1, n, size=n)) % n
    neg_random = 100.0 * float(s[np.arange(n), partner].mean())
    rows = np.arange(n)
    return {
        "pos": pos, "neg": neg, "neg_difflabel": neg_diff, "neg_random": neg_random,
        "rel_diff": _rel(pos, neg), "rel_diff_difflabel": _rel(pos, neg_diff), "rel_diff_random": _rel(pos, neg_random),
        "acc1_en_to_x": 100.0 * float((s.argmax(axis=1) == rows).mean()),
        "acc1_x_to_en": 100.0 * float((s.argmax(axis=0) == rows).mean()),
    }  # fmt: skip


def average(per_language: dict[str, dict[str, float]]) -> dict[str, float]:
    """The mean of every metric over the languages (NaNs left out; NaN if all are)."""
    out = {}
    for m in METRICS:
        values = [v[m] for v in per_language.values() if m in v and not math.isnan(v[m])]
        out[m] = float(np.mean(values)) if values else math.nan
    return out
