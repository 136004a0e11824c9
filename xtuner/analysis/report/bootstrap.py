"""Paired bootstrap over test examples: is a difference between two configurations more than test-set noise?

Procedure (per task and language, configuration A against configuration B):

1. Each done run of A and of B has its per-example test statistics as the MLflow artifact ``predictions/<lang>.parquet``
   (written by `xtuner.metrics.examples.write_predictions`). The examples are matched by id; only ids present in
   every run of both sides are used (n examples).
2. Observed difference d = mean over A's seeds of the main metric minus the same for B, both re-scored on those n
   examples with `xtuner.metrics.examples.score` (so F1 over spans is re-computed from counts, not averaged).
3. B resamples (default 1000): each draws n example indices with replacement from ``numpy.random.default_rng(seed)``
   (default seed 0, a fresh generator per comparison, so a report is reproducible). The same indices are used for
   every seed of both sides (examples are paired across configurations and pooled across seeds): a side's score on
   a draw is the mean over its seeds of `score_matrix` on that draw. d* = A's minus B's.
4. Two-sided p = min(1, 2 * min((#{d* <= 0} + 1) / (B + 1), (#{d* >= 0} + 1) / (B + 1))): the percentile bootstrap's
   test of "no difference" (zero lies outside the central 1 - p interval of d*). Identical systems give p = 1; the
   smallest p reachable is 2 / (B + 1).
5. A difference is marked (``*``) when p < 0.05. The report counts the languages where A is significantly better
   ("PT > FT on k of n languages") and those where B is.

This measures test-set sampling noise for the given trained models; the seed-to-seed spread is the separate
``± sd`` of the tables.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xtuner.analysis.report.runs import Run
from xtuner.errors import XtunerError
from xtuner.metrics.examples import KINDS, read_predictions, score, score_matrix

RESAMPLES = 1000
SEED = 0
ALPHA = 0.05
MAX_CELLS = 4_000_000  # draws x examples held at once


@dataclass
class Comparison:
    lang: str
    delta: float | None  # A minus B on the matched examples (None: not comparable)
    p: float | None
    n: int  # matched examples
    note: str = ""

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < ALPHA


def paired_bootstrap(kind: str, a: list[pd.DataFrame], b: list[pd.DataFrame], resamples: int = RESAMPLES,
                     seed: int = SEED) -> tuple[float, float, int]:  # fmt: skip
    """(d, two-sided p, n) for the seeds `a` and `b` of two configurations: frames of per-example statistics
    already aligned row by row (same examples in the same order). See the module doc."""
    if kind not in KINDS:
        raise XtunerError(f"unknown statistic kind {kind!r}; known: {', '.join(KINDS)}")
    if not a or not b:
        raise XtunerError("paired bootstrap: each side needs at least one run")
    n = len(a[0])
    if any(len(f) != n for f in [*a, *b]):
        raise XtunerError("paired bootstrap: the frames are not aligned (different numbers of examples)")
    if n == 0:
        raise XtunerError("paired bootstrap: no examples")
    observed = float(np.mean([score(kind, f) for f in a]) - np.mean([score(kind, f) for f in b]))
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    step = max(1, MAX_CELLS // n)
    for start in range(0, resamples, step):
        m = min(step, resamples - start)
        draws = rng.integers(0, n, size=(m, n))
        side_a = np.mean([score_matrix(kind, f, draws) for f in a], axis=0)
        side_b = np.mean([score_matrix(kind, f, draws) for f in b], axis=0)
        deltas[start : start + m] = side_a - side_b
    tol = 1e-9  # identical systems: every d* is 0 up to rounding
    low = (np.sum(deltas <= tol) + 1) / (resamples + 1)
    high = (np.sum(deltas >= -tol) + 1) / (resamples + 1)
    return observed, float(min(1.0, 2.0 * min(low, high))), n


def align(frames: list[pd.DataFrame]) -> tuple[list[pd.DataFrame], int]:
    """The frames restricted to the example ids all of them have, in one order; and how many ids were dropped."""
    common = set(frames[0]["id"].astype(str))
    for f in frames[1:]:
        common &= set(f["id"].astype(str))
    ids = sorted(common)
    dropped = max(len(f) for f in frames) - len(ids)
    out = [f.assign(id=f["id"].astype(str)).set_index("id").loc[ids].reset_index() for f in frames]
    return out, dropped


class PredictionStore:
    """Downloads and caches each run's ``predictions/`` artifacts (None for a run without them)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._dir = Path(tempfile.mkdtemp(prefix="xtuner-report-pred-"))
        self._cache: dict[str, tuple[dict, dict[str, pd.DataFrame]] | None] = {}

    def get(self, run: Run) -> tuple[dict, dict[str, pd.DataFrame]] | None:
        if run.run_id not in self._cache:
            self._cache[run.run_id] = self._load(run)
        return self._cache[run.run_id]

    def _load(self, run: Run) -> tuple[dict, dict[str, pd.DataFrame]] | None:
        try:
            names = [f.path for f in self.client.list_artifacts(run.run_id, "predictions")]
        except Exception:  # noqa: BLE001 - no artifact store entry: no predictions
            return None
        if not any(n.endswith("meta.json") for n in names):
            return None
        local = self.client.download_artifacts(run.run_id, "predictions", str(self._dir / run.run_id))
        try:
            return read_predictions(local)
        except XtunerError:
            return None

    def close(self) -> None:
        import shutil

        shutil.rmtree(self._dir, ignore_errors=True)


def compare(store: PredictionStore, runs_a: list[Run], runs_b: list[Run], lang: str, resamples: int = RESAMPLES,
            seed: int = SEED) -> Comparison:  # fmt: skip
    """Configuration A (its done runs) against B on `lang`, from their prediction artifacts."""
    sides: list[list[pd.DataFrame]] = []
    kind = None
    for runs in (runs_a, runs_b):
        frames = []
        for run in runs:
            got = store.get(run)
            if got is None or lang not in got[1]:
                continue
            kind = got[0]["kind"]
            frames.append(got[1][lang])
        sides.append(frames)
    if not sides[0] or not sides[1] or kind is None:
        return Comparison(lang, None, None, 0, "no per-example predictions")
    aligned, dropped = align(sides[0] + sides[1])
    if not len(aligned[0]):
        return Comparison(lang, None, None, 0, "no common test examples")
    a, b = aligned[: len(sides[0])], aligned[len(sides[0]) :]
    delta, p, n = paired_bootstrap(kind, a, b, resamples, seed)
    note = f"{dropped} examples not in every run" if dropped else ""
    missing = len(runs_a) + len(runs_b) - len(a) - len(b)
    if missing:
        note = "; ".join(x for x in (note, f"{missing} run(s) without predictions left out") if x)
    return Comparison(lang, delta, p, n, note)
