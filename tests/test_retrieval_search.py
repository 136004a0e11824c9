"""XTREME's retrieval prediction and metrics (xtuner/retrieval/search.py, xtuner/metrics/retrieval.py): known
answers on hand-made vectors, and margin mining against a direct port of the loops of XTREME's utils_retrieve.py."""

from __future__ import annotations

import numpy as np
import pytest

from xtuner.metrics.retrieval import bucc_f1, retrieval_accuracy
from xtuner.retrieval import search


def test_tatoeba_identity_and_permuted() -> None:
    eye = np.eye(5, dtype=np.float32) * 3.0  # unnormalised on purpose: cosine ignores the scale
    assert search.tatoeba_predictions(eye, eye).tolist() == [0, 1, 2, 3, 4]
    perm = [3, 0, 4, 1, 2]
    other = eye[perm]  # other[i] is the translation of english[perm[i]]
    pred = search.tatoeba_predictions(other, eye).tolist()
    assert [perm[p] for p in pred] == [0, 1, 2, 3, 4]
    assert retrieval_accuracy(pred, [perm.index(i) for i in range(5)])["accuracy"] == 100.0
    assert retrieval_accuracy(pred, [0, 1, 2, 3, 4])["accuracy"] == 0.0  # the identity is wrong here


def test_knn_order_and_chunks() -> None:
    rng = np.random.default_rng(0)
    q, b = search.normalize(rng.normal(size=(37, 8))), search.normalize(rng.normal(size=(50, 8)))
    sims, inds = search.knn(q, b, 4, chunk=5)
    full = q @ b.T
    expected = np.argsort(-full, axis=1)[:, :4]
    assert (inds == expected).all()
    assert np.allclose(sims, np.take_along_axis(full, expected, axis=1), atol=1e-6)


def _reference_mine(x: np.ndarray, y: np.ndarray, k: int = 4) -> list[tuple[float, int, int]]:
    """utils_retrieve.mine_bitext (mode mine, retrieval max, margin ratio, threshold 0) with its loops, brute force."""
    x, y = search.normalize(x), search.normalize(y)
    sim = x @ y.T
    x2y_ind = np.argsort(-sim, axis=1)[:, :k]
    y2x_ind = np.argsort(-sim.T, axis=1)[:, :k]
    x2y_mean = np.array([sim[i, x2y_ind[i]].mean() for i in range(len(x))])
    y2x_mean = np.array([sim[y2x_ind[j], j].mean() for j in range(len(y))])
    fwd = np.zeros(x2y_ind.shape)
    for i in range(fwd.shape[0]):
        for j in range(fwd.shape[1]):
            kk = x2y_ind[i, j]
            fwd[i, j] = x[i].dot(y[kk]) / ((x2y_mean[i] + y2x_mean[kk]) / 2)
    bwd = np.zeros(y2x_ind.shape)
    for i in range(bwd.shape[0]):
        for j in range(bwd.shape[1]):
            kk = y2x_ind[i, j]
            bwd[i, j] = y[i].dot(x[kk]) / ((y2x_mean[i] + x2y_mean[kk]) / 2)
    fwd_best = x2y_ind[np.arange(len(x)), fwd.argmax(axis=1)]
    bwd_best = y2x_ind[np.arange(len(y)), bwd.argmax(axis=1)]
    indices = np.stack((np.concatenate((np.arange(len(x)), bwd_best)), np.concatenate((fwd_best, np.arange(len(y))))),
                       axis=1)  # fmt: skip
    scores = np.concatenate((fwd.max(axis=1), bwd.max(axis=1)))
    seen_src, seen_trg, out = set(), set(), []
    for i in np.argsort(-scores, kind="stable"):
        s, t = indices[i]
        if s not in seen_src and t not in seen_trg:
            seen_src.add(s)
            seen_trg.add(t)
            if scores[i] > 0:
                out.append((float(scores[i]), int(s), int(t)))
    return out


def test_mining_matches_the_reference_loops() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=(30, 16))
    x = np.concatenate([base[:20] + 0.3 * rng.normal(size=(20, 16)), rng.normal(size=(15, 16))])
    y = np.concatenate([base[:20] + 0.3 * rng.normal(size=(20, 16)), rng.normal(size=(25, 16))])
    mine, ref = search.mine(x, y), _reference_mine(x, y)
    assert [(s, t) for _, s, t in mine] == [(s, t) for _, s, t in ref]
    assert np.allclose([m[0] for m in mine], [r[0] for r in ref], atol=1e-5)
    found = {(s, t) for _, s, t in mine}
    assert sum((i, i) in found for i in range(20)) >= 18  # the noisy translations are mined


def test_bucc_candidates_dedupe_and_repeated_texts() -> None:
    # orthogonal translation pairs: a<->A, b<->B; "dup" occurs twice on the source side with two ids, so
    # read_sent2id drops it, and its candidate pair never reaches the result
    x = np.eye(4, dtype=np.float32)[[0, 1, 2, 2]]
    y = np.eye(4, dtype=np.float32)[[0, 1, 2, 3]]
    cands = search.bucc_candidates(x, ["s1", "s2", "s3", "s4"], ["a", "b ", "dup", "dup"],
                                   y, ["e1", "e2", "e3", "e4"], ["A", "B", "C", "D"])  # fmt: skip
    assert set(cands) == {("s1", "e1"), ("s2", "e2")}
    assert all(score > 1.0 for score in cands.values())  # cos 1 over a mean-of-4 neighbourhood below 1


def test_threshold_midpoint_and_f1() -> None:
    cands = {("a", "A"): 1.5, ("b", "B"): 1.3, ("c", "X"): 1.2, ("d", "D"): 1.1, ("e", "Y"): 0.9}
    gold = {("a", "A"), ("b", "B"), ("d", "D"), ("f", "F")}
    # F1 along the ranking: 1/1 0.4, 2/2 0.667, 2/3 0.571, 3/4 0.75, 3/5 0.667 -> best after ("d", "D")
    assert search.optimize_threshold(cands, gold) == pytest.approx((1.1 + 0.9) / 2)
    picked = search.extract(cands, search.optimize_threshold(cands, gold))
    assert set(picked) == {("a", "A"), ("b", "B"), ("c", "X"), ("d", "D")}
    scores = bucc_f1(picked, sorted(gold))
    assert scores["precision"] == pytest.approx(75.0) and scores["recall"] == pytest.approx(75.0)
    assert scores["f1"] == pytest.approx(75.0)
    assert search.optimize_threshold({("a", "A"): 2.0}, {("a", "A")}) == 2.0  # the last candidate: its own score
    assert bucc_f1([("x", "y")], [("a", "A")]) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def _xtreme_layer(depth: int, num_layers: int, specific_layer: int) -> int:
    """The hidden_states index XTREME's scripts embed with: ``all_layer_outputs[-num_layers:][specific_layer]``
    (``extract_embeddings`` in evaluate_retrieval.py / run_retrieval.py), for a model of `depth` layers."""
    return list(range(depth + 1))[-num_layers:][specific_layer]


def test_default_layers_are_the_xtreme_scripts() -> None:
    from xtuner.retrieval.encode import default_layer

    # run_tatoeba.sh: --num_layers 12 --specific_layer 7 (12 layers), --num_layers 24 --specific_layer 13 (24)
    assert default_layer(12, "tatoeba") == _xtreme_layer(12, 12, 7) == 8
    assert default_layer(24, "tatoeba") == _xtreme_layer(24, 24, 13) == 14
    # run_bucc2018.sh: --specific_layer 7 and no --num_layers, so run_retrieval.py's default 12
    assert default_layer(12, "bucc") == _xtreme_layer(12, 12, 7) == 8
    assert default_layer(24, "bucc") == _xtreme_layer(24, 12, 7) == 20


def test_sentence_vectors_are_xtremes_mean_pooling(tiny_model: str) -> None:
    """XTREME's extract_embeddings, written out with transformers: ``[cls] + tokens + [sep]`` per sentence, padded
    to the batch's longest, token type 0, the mean of the layer's states over the attention mask (special tokens
    included: pool_skip_special_token is off), against `Encoder.vectors` on the untuned retrieval model."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from xtuner.analysis.representations.subjects import untuned
    from xtuner.models import resolve_model
    from xtuner.retrieval.encode import default_layer
    from xtuner.retrieval.evaluate import Encoder

    sentences = ["the farmer saw a red car near the river .", "a dog .", "he reads", "  a cat sleeps  "]
    path = resolve_model(tiny_model)
    tok = AutoTokenizer.from_pretrained(path)
    ref_model = AutoModel.from_pretrained(path).eval()
    depth = ref_model.config.num_hidden_layers
    layer = default_layer(depth, "tatoeba")
    toks = [tok.tokenize(s.strip()) for s in sentences]  # tokenize_text strips each line
    length = max(len(t) for t in toks) + 2
    ids = [tok.convert_tokens_to_ids([tok.cls_token, *t, tok.sep_token]) for t in toks]
    mask = torch.tensor([[1] * len(i) + [0] * (length - len(i)) for i in ids])
    input_ids = torch.tensor([i + [tok.pad_token_id] * (length - len(i)) for i in ids])
    with torch.no_grad():
        states = ref_model(input_ids=input_ids, attention_mask=mask, token_type_ids=torch.zeros_like(input_ids),
                           output_hidden_states=True).hidden_states  # fmt: skip
    hidden = states[-depth:][layer - 1]  # hidden_states[1:], as the scripts index it (module test above)
    expected = ((hidden * mask.unsqueeze(2)).sum(1) / mask.sum(1, keepdim=True)).numpy()
    subject = untuned(tiny_model)
    got = Encoder(subject.model, subject.tokenizer, batch_size=2).vectors([s.strip() for s in sentences], "tatoeba")
    assert got.shape == expected.shape and np.allclose(got, expected, atol=1e-5)
