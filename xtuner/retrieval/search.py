"""Prediction for the retrieval tasks, as google-research/xtreme does it (``third_party/utils_retrieve.py``, which
adapts LASER's mining code, and ``third_party/evaluate_retrieval.py`` / ``run_retrieval.py``):

- cosine similarity = inner product of L2-normalised rows (XTREME: ``faiss.normalize_L2`` + ``IndexFlatIP``, or
  ``IndexFlatL2`` on normalised rows, which ranks the same); exact search, in chunks (``torch.topk``), no faiss;
- Tatoeba (``similarity_search``): the other language's sentences are the index and every English sentence is a
  query; the prediction is the position of the nearest one, scored against the gold position;
- BUCC (``mine_bitext`` with its defaults ``mode='mine', retrieval='max', margin='ratio', neighborhood=4``):
  duplicate sentences are embedded once (``text_load_unify``); k = min(4, n) nearest neighbours both ways; the
  ratio margin ``cos(x, y) / ((mean_k cos(x, NN_k(x)) + mean_k cos(y, NN_k(y))) / 2)`` scores each sentence's
  candidates; each side's best candidate is kept; candidates are taken greedily by falling score, each sentence at
  most once, while the score is above 0. Sentences map back to ids by their text; a text that occurs with more
  than one id is dropped (``read_sent2id``), and a pair keeps its highest score (``read_candidate2score``);
- the BUCC threshold (``bucc_optimize``): walk the candidates by falling score; at the best F1 against the gold
  pairs, the threshold is the midpoint between that candidate's score and the next one's (the last candidate's
  own score if it is the last: XTREME's code would index past the end there). XTREME chooses it on the dev
  ("sample") gold and applies it to the test set; ``bucc_extract`` keeps the candidates whose score >= threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

MINING_NEIGHBOURS = 4
MAX_BLOCK = 50_000_000  # floats in one query-chunk x base score block (200 MB)


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); an all-zero row stays zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


def knn(query: np.ndarray, base: np.ndarray, k: int, *, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The `k` rows of `base` with the largest inner product with each row of `query`, best first: (scores
    [n, k], indices [n, k]). Rows should be normalised (then scores are cosines). Exact search in query chunks
    whose score block stays near `MAX_BLOCK` floats (BUCC's sides hold ~400k sentences), on a GPU when there is one."""
    k = min(k, base.shape[0])
    chunk = chunk or max(1, MAX_BLOCK // max(base.shape[0], 1))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    b = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32)).to(device)
    sims, inds = [], []
    for start in range(0, query.shape[0], chunk):
        q = torch.from_numpy(np.ascontiguousarray(query[start : start + chunk], dtype=np.float32)).to(device)
        s, i = torch.topk(q @ b.T, k, dim=1, largest=True, sorted=True)
        sims.append(s.cpu().numpy())
        inds.append(i.cpu().numpy())
    if not sims:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(sims), np.concatenate(inds)


def nearest(query: np.ndarray, base: np.ndarray) -> np.ndarray:
    """For each query row, the index of the most similar base row (cosine)."""
    return knn(normalize(query), normalize(base), 1)[1][:, 0]


def tatoeba_predictions(other: np.ndarray, english: np.ndarray) -> np.ndarray:
    """XTREME's Tatoeba prediction: for each English sentence, the position of the nearest sentence of the other
    language (``similarity_search(x=other, y=english)``)."""
    return nearest(english, other)


# ------------------------------------------------------------------------------------------------ BUCC mining
def unify(texts: Sequence[str]) -> tuple[list[int], list[int]]:
    """(unique index of every line, position of each unique text's first line), as ``text_load_unify``."""
    first: dict[str, int] = {}
    positions: list[int] = []
    inds = []
    for pos, text in enumerate(texts):
        if text not in first:
            first[text] = len(positions)
            positions.append(pos)
        inds.append(first[text])
    return inds, positions


def mine(x: np.ndarray, y: np.ndarray, *, k: int = MINING_NEIGHBOURS) -> list[tuple[float, int, int]]:
    """Margin-based mining between unique source rows `x` and unique English rows `y` (module doc):
    ``(score, source row, English row)`` for every kept candidate, best first."""
    x, y = normalize(x), normalize(y)
    x2y_sim, x2y_ind = knn(x, y, k)
    y2x_sim, y2x_ind = knn(y, x, k)
    x2y_mean, y2x_mean = x2y_sim.mean(axis=1), y2x_sim.mean(axis=1)
    fwd = x2y_sim / ((x2y_mean[:, None] + y2x_mean[x2y_ind]) / 2)
    bwd = y2x_sim / ((y2x_mean[:, None] + x2y_mean[y2x_ind]) / 2)
    fwd_best = x2y_ind[np.arange(x.shape[0]), fwd.argmax(axis=1)]
    bwd_best = y2x_ind[np.arange(y.shape[0]), bwd.argmax(axis=1)]
    src = np.concatenate([np.arange(x.shape[0]), bwd_best])
    trg = np.concatenate([fwd_best, np.arange(y.shape[0])])
    scores = np.concatenate([fwd.max(axis=1), bwd.max(axis=1)])
    seen_src, seen_trg = set(), set()
    out = []
    for i in np.argsort(-scores, kind="stable"):
        s, t = int(src[i]), int(trg[i])
        if s in seen_src or t in seen_trg:
            continue
        seen_src.add(s)
        seen_trg.add(t)
        if scores[i] > 0:
            out.append((float(scores[i]), s, t))
    return out


def _text_ids(texts: Sequence[str], ids: Sequence[str]) -> dict[str, str]:
    """Text -> id; a text that occurs on more than one line is left out (``read_sent2id``)."""
    found: dict[str, str] = {}
    repeated: set[str] = set()
    for text, sid in zip(texts, ids, strict=True):
        if text in found:
            repeated.add(text)
        else:
            found[text] = sid
    return {t: i for t, i in found.items() if t not in repeated}


def bucc_candidates(
    x: np.ndarray, src_ids: Sequence[str], src_texts: Sequence[str],
    y: np.ndarray, trg_ids: Sequence[str], trg_texts: Sequence[str],
) -> dict[tuple[str, str], float]:  # fmt: skip
    """Mined ``(source id, English id) -> score`` of one language pair; texts are compared stripped."""
    src_texts = [t.strip() for t in src_texts]
    trg_texts = [t.strip() for t in trg_texts]
    _, src_first = unify(src_texts)
    _, trg_first = unify(trg_texts)
    src_map, trg_map = _text_ids(src_texts, src_ids), _text_ids(trg_texts, trg_ids)
    out: dict[tuple[str, str], float] = {}
    for score, s, t in mine(x[src_first], y[trg_first]):
        s_text, t_text = src_texts[src_first[s]], trg_texts[trg_first[t]]
        if s_text in src_map and t_text in trg_map:
            key = (src_map[s_text], trg_map[t_text])
            out[key] = max(score, out.get(key, score))
    return out


def optimize_threshold(candidates: dict[tuple[str, str], float], gold: set[tuple[str, str]]) -> float:
    """The score threshold with the best F1 against `gold` (``bucc_optimize``; module doc)."""
    items = sorted(candidates.items(), key=lambda kv: -kv[1])
    correct = 0
    threshold, best_f1 = 0.0, 0.0
    for i, (pair, score) in enumerate(items):
        correct += pair in gold
        if correct:
            precision, recall = correct / (i + 1), correct / len(gold)
            f1 = 2 * precision * recall / (precision + recall)
            if f1 > best_f1:
                best_f1 = f1
                threshold = (score + items[i + 1][1]) / 2 if i + 1 < len(items) else score
    return threshold


def extract(candidates: dict[tuple[str, str], float], threshold: float) -> list[tuple[str, str]]:
    """The pairs whose score is at least `threshold` (``bucc_extract``)."""
    return [pair for pair, score in candidates.items() if score >= threshold]
