"""The encoder of every method as the analyses and retrieval tasks read it (xtuner.methods.encoder_hidden_states):
the deep-prompt prefix and its shifted positions are really used, soft-prompt positions are sliced off, LoRA's
adapters act, fine-tuning is the backbone itself, and what the heads consume is what the analysis reads."""

from __future__ import annotations

import pytest
import torch

from xtuner.methods import build_model, encoder_hidden_states
from xtuner.models import resolve_model
from xtuner.retrieval.encode import default_layer, sentence_vectors
from xtuner.tasks import HeadType

PAIRS = [("the farmer saw a red car .", "a red car was seen ."), ("maria worked in paris .", "she worked .")]


@pytest.fixture(scope="module")
def path(tiny_model: str) -> str:
    return resolve_model(tiny_model)


@pytest.fixture(scope="module")
def tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _batch(tokenizer):
    enc = tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _build(path: str, method: str, head=HeadType.SEQUENCE_CLASSIFICATION, **settings):
    torch.manual_seed(0)
    model = build_model(path, head, 2, method, settings).model
    return model.eval()


def _states(model, tokenizer) -> tuple[torch.Tensor, ...]:
    ids, mask = _batch(tokenizer)
    with torch.no_grad():
        return encoder_hidden_states(model, ids, mask)


def test_deep_prompt_prefix_and_shifted_positions_are_used(path: str, tokenizer) -> None:
    untuned = _states(_build(path, "finetune"), tokenizer)
    model = _build(path, "deep_prompt", psl=4)
    with torch.no_grad():
        model.encoder.prefix_encoder.embedding.weight.normal_(0, 1.0)  # a "trained" prefix, far from zero
    states = _states(model, tokenizer)
    ids, mask = _batch(tokenizer)
    assert len(states) == len(untuned) == 5 and states[-1].shape == untuned[-1].shape  # input positions only
    assert not torch.allclose(states[-1][:, 0], untuned[-1][:, 0], atol=1e-3)  # the prefix changes the vectors
    enc = model.encoder
    backbone = enc.backbone
    with torch.no_grad():  # the same computation spelled out: prefix in every layer, positions offset by psl
        shifted = backbone.embeddings.create_position_ids_from_input_ids(ids, backbone.embeddings.padding_idx, 4)
        manual = backbone(input_ids=ids, attention_mask=mask, position_ids=shifted, output_hidden_states=True,
                          xtuner_prefix_kv=enc.prefix_key_values(ids.shape[0])).hidden_states  # fmt: skip
        plain = backbone(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                         xtuner_prefix_kv=enc.prefix_key_values(ids.shape[0])).hidden_states  # fmt: skip
        head_input, _ = enc(ids, mask, None)  # what the classification head consumes
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(states, manual, strict=True))
    assert not torch.allclose(states[-1], plain[-1], atol=1e-4)  # unshifted positions give other vectors
    assert torch.allclose(states[-1], head_input, atol=1e-5)


def test_soft_prompt_slices_the_virtual_tokens(path: str, tokenizer) -> None:
    untuned = _states(_build(path, "finetune"), tokenizer)
    states = _states(_build(path, "soft_prompt", psl=3), tokenizer)
    assert states[-1].shape == untuned[-1].shape
    assert not torch.allclose(states[-1][:, 0], untuned[-1][:, 0], atol=1e-3)


def test_lora_adapters_act_and_finetune_is_the_backbone(path: str, tokenizer) -> None:
    untuned = _states(_build(path, "finetune"), tokenizer)
    lora = _build(path, "lora", r=2)
    assert torch.allclose(_states(lora, tokenizer)[-1], untuned[-1], atol=1e-5)  # B starts at zero
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    assert not torch.allclose(_states(lora, tokenizer)[-1], untuned[-1], atol=1e-3)
    bare = _build(path, "finetune", head=HeadType.RETRIEVAL)  # the retrieval head: the bare encoder
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(_states(bare, tokenizer), untuned, strict=True))


def test_sentence_vectors_mean_pool_and_first_position(path: str, tokenizer) -> None:
    model = _build(path, "finetune", head=HeadType.RETRIEVAL)
    texts = ["a short one .", "a much longer sentence with many more words in it ."]
    mean = sentence_vectors(model, tokenizer, texts, layer=3, pooling="mean", max_length=512, batch_size=1)
    first = sentence_vectors(model, tokenizer, list(zip(texts, texts, strict=True)), layer=-1, pooling="first",
                             max_length=128, batch_size=2)  # fmt: skip
    with torch.no_grad():
        enc = tokenizer(texts[1], return_tensors="pt")
        states = encoder_hidden_states(model, enc["input_ids"], enc["attention_mask"])
        pair = tokenizer(texts[0], texts[0], return_tensors="pt")
        pair_states = encoder_hidden_states(model, pair["input_ids"], pair["attention_mask"])
    assert torch.allclose(torch.from_numpy(mean[1]), states[3][0].mean(dim=0), atol=1e-5)  # <s> and </s> included
    assert torch.allclose(torch.from_numpy(first[0]), pair_states[-1][0, 0], atol=1e-5)
    both = sentence_vectors(model, tokenizer, texts, layer=3, pooling="mean", max_length=512, batch_size=2)
    assert abs(both - mean).max() < 1e-4  # padding in a shared batch changes nothing


def test_xtreme_layers() -> None:
    assert default_layer(12, "tatoeba") == 8 and default_layer(24, "tatoeba") == 14
    assert default_layer(12, "bucc") == 8 and default_layer(24, "bucc") == 20
    assert default_layer(4, "bucc") == 3 and default_layer(6, "tatoeba") == 4
