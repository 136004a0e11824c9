"""Encode the parallel rows with one model and measure its alignment, per language and on average.

The representation is the reference's (salesforce/MPT ``--do_analysis``): the pair encoded jointly (max length
128), eval mode, no gradient, the LAST layer's hidden state at position 0 (``<s>``), not the pooler and never a
task head; for a prompt method its encoder runs with the learned prompt (``xtuner.methods.encoder_hidden_states``).
"""

from __future__ import annotations

import numpy as np

from xtuner.analysis.representations.data import MAX_LENGTH, ParallelRows
from xtuner.analysis.representations.maths import alignment, average
from xtuner.retrieval.encode import sentence_vectors

PREFIX = "analysis/representations"


def encode(rows: ParallelRows, model, tokenizer, *, batch_size: int = 64) -> dict[str, np.ndarray]:
    """{language: [N, H] vectors} for English and every analysed language."""
    return {
        lang: sentence_vectors(model, tokenizer, pairs, layer=-1, pooling="first", max_length=MAX_LENGTH,
                               batch_size=batch_size)  # fmt: skip
        for lang, pairs in rows.pairs.items()
    }


def measure(rows: ParallelRows, vectors: dict[str, np.ndarray], source: str = "en", *,
            seed: int = 0) -> dict[str, dict[str, float]]:  # fmt: skip
    """{language: metrics} plus ``avg`` (the mean over the languages)."""
    out = {lang: alignment(vectors[source], vectors[lang], rows.labels, seed=seed) for lang in rows.languages}
    return {**out, "avg": average(out)}


def flat(per_language: dict[str, dict[str, float]], prefix: str = PREFIX) -> dict[str, float]:
    """``<prefix>/<lang>/<metric>`` keys, as logged to MLflow."""
    return {f"{prefix}/{lang}/{m}": v for lang, metrics in per_language.items() for m, v in metrics.items()}


def analyse_model(task, model, tokenizer, rows: ParallelRows, *, batch_size: int = 64,
                  seed: int = 0) -> dict[str, dict[str, float]]:  # fmt: skip
    return measure(rows, encode(rows, model, tokenizer, batch_size=batch_size), task.source_lang, seed=seed)
