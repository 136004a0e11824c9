"""Sentence vectors from any built model's encoder (``xtuner.methods.encoder_hidden_states``).

Two recipes use this:

- XTREME's retrieval representation (``third_party/evaluate_retrieval.py`` / ``run_retrieval.py``,
  ``extract_embeddings``): one sentence per input, ``<s> tokens </s>`` cut at ``max_length`` (512 in the run
  scripts), token type 0, the mean of one layer's hidden states over every non-padding position (``<s>`` and
  ``</s>`` included: ``pool_skip_special_token`` is off in the scripts; ``run_retrieval.py`` also ignores its
  ``--pool_type cls`` argument and always mean-pools); segment ids as the tokenizer makes them (0 for one
  sentence, as XTREME passes);
- the representation analysis of Tu et al. (salesforce/MPT ``--do_analysis``): the sentence PAIR encoded jointly
  (max length 128), the last layer's hidden state at position 0 (``<s>``).

Layers are counted as transformers' ``hidden_states`` are: 0 = the embedding output, L = the last layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from xtuner.data.batching import bucketed_batches
from xtuner.errors import XtunerError

Pooling = Literal["mean", "first"]

# XTREME's layer, as its scripts compute it (hidden_states index), for the depths it ran:
# run_tatoeba.sh: --num_layers L --specific_layer 7 (12 layers) / 13 (24 layers), an index into hidden_states[1:];
# run_bucc2018.sh: --specific_layer 7 and no --num_layers (default 12), an index into the LAST 12 hidden states,
# so layer L - 4 (8 for a 12-layer model, 20 for a 24-layer one).
XTREME_LAYERS = {"tatoeba": {12: 8, 24: 14}, "bucc": {12: 8, 24: 20}}


def default_layer(num_layers: int, family: str) -> int:
    """XTREME's layer for a retrieval task family (``XTREME_LAYERS``); for other depths 2L/3 rounded (8 of 12, the
    layer both scripts use for 12-layer models), at least 1."""
    known = XTREME_LAYERS.get(family, {})
    if num_layers in known:
        return known[num_layers]
    return max(1, min(num_layers, round(2 * num_layers / 3)))


def sentence_vectors(
    model: nn.Module,
    tokenizer,
    texts: Sequence[str] | Sequence[tuple[str, str]],
    *,
    layer: int,
    pooling: Pooling,
    max_length: int,
    batch_size: int = 64,
) -> np.ndarray:
    """``[N, H]`` float32 vectors of `texts` (strings, or (first, second) pairs encoded jointly) from hidden-states
    layer `layer` (negative counts from the end), mean-pooled over the attention mask or taken at position 0."""
    from xtuner.methods import encoder_hidden_states

    if not len(texts):
        raise XtunerError("no sentences to encode")
    if isinstance(texts[0], tuple | list):
        firsts, seconds = [t[0] for t in texts], [t[1] for t in texts]
        enc = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
    else:
        enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    types = enc.get("token_type_ids")  # segment ids where the model has them (BERT: 0 then 1 for a pair)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    out: np.ndarray | None = None
    model.eval()
    with torch.inference_mode():
        for idx in bucketed_batches([len(x) for x in ids], batch_size):
            rows = {"input_ids": [ids[i] for i in idx]}
            if types is not None:
                rows["token_type_ids"] = [types[i] for i in idx]
            batch = tokenizer.pad(rows, return_tensors="pt")
            input_ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            segments = batch["token_type_ids"].to(device) if types is not None else None
            states = encoder_hidden_states(model, input_ids, mask, segments)
            if not -len(states) <= layer < len(states):
                raise XtunerError(f"layer {layer} does not exist: the encoder has {len(states) - 1} layers (0-"
                                  f"{len(states) - 1}, 0 = embeddings)")  # fmt: skip
            hidden = states[layer].float()
            if pooling == "first":
                vec = hidden[:, 0]
            else:
                m = mask.unsqueeze(-1).to(hidden.dtype)
                vec = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)
            arr = vec.cpu().numpy()
            if out is None:
                out = np.zeros((len(ids), arr.shape[1]), dtype=np.float32)
            out[idx] = arr
    assert out is not None
    return out
