"""Tests of the tuning-method registry (xtuner.methods) on a tiny XLM-R built from config and saved to disk.

The key test is reference parity: deep_prompt's output equals a hand-written XLM-R forward pass (embeddings,
then per layer softmax(QK^T / sqrt(d) + mask) V with the prefix keys/values concatenated by hand, in P-tuning v2's
layout), so the hook is checked against the formulation, not against itself.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import XLMRobertaConfig, XLMRobertaModel

from xtuner.errors import XtunerError
from xtuner.methods import BuiltModel, build_model, get_method, method_names, validate_settings
from xtuner.methods._prompt import PromptForSequenceClassification
from xtuner.methods.deep_prompt import DeepPromptEncoder, DeepPromptSettings
from xtuner.tasks.base import HeadType

VOCAB, HIDDEN, LAYERS, HEADS = 100, 32, 2, 2
PAD = 1  # XLMRobertaConfig's pad_token_id
NUM_LABELS = 3
METHODS = ("finetune", "deep_prompt", "soft_prompt", "lora")


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=64,
        max_position_embeddings=130,
    )
    path = tmp_path_factory.mktemp("tiny-xlmr")
    XLMRobertaModel(config).save_pretrained(path)
    return str(path)


def batch(lengths: tuple[int, ...] = (9, 6), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random ids (never the pad id inside a sequence) and the matching attention mask."""
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(3, VOCAB, (len(lengths), width), generator=gen)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
        ids[row, n:] = PAD
    return ids, mask


TRAINED_HEADS = [h for h in HeadType if h != HeadType.RETRIEVAL]  # retrieval has no head and never trains


def targets(head: HeadType, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    b, t = ids.shape
    if head == HeadType.SEQUENCE_CLASSIFICATION:
        return {"labels": torch.arange(b) % NUM_LABELS}
    if head == HeadType.TOKEN_CLASSIFICATION:
        return {"labels": torch.arange(b * t).view(b, t) % NUM_LABELS}
    return {"start_positions": torch.tensor([1, 2])[:b], "end_positions": torch.tensor([3, 4])[:b]}


def head_params(head: HeadType) -> int:
    out = 2 if head == HeadType.EXTRACTIVE_QA else NUM_LABELS
    return HIDDEN * out + out


# ---------------------------------------------------------------- every method x every head


@pytest.mark.parametrize("head", TRAINED_HEADS)
@pytest.mark.parametrize("method", METHODS)
def test_forward_backward_shapes(tiny_path: str, method: str, head: HeadType) -> None:
    built = build_model(tiny_path, head, NUM_LABELS, method, {})
    ids, mask = batch()
    out = built.model(input_ids=ids, attention_mask=mask, **targets(head, ids))
    if head == HeadType.SEQUENCE_CLASSIFICATION:
        assert out.logits.shape == (2, NUM_LABELS)
    elif head == HeadType.TOKEN_CLASSIFICATION:
        assert out.logits.shape == (2, ids.shape[1], NUM_LABELS)
    else:
        assert out.start_logits.shape == out.end_logits.shape == ids.shape
    assert torch.isfinite(out.loss)
    out.loss.backward()
    trainable = [(n, p) for n, p in built.model.named_parameters() if p.requires_grad]
    assert trainable and built.trainable_params == sum(p.numel() for _, p in trainable)
    assert all(p.grad is not None for _, p in trainable), [n for n, p in trainable if p.grad is None]
    assert all(p.grad is None for p in built.model.parameters() if not p.requires_grad)
    if method == "finetune":
        assert built.trainable_params == built.total_params
    else:
        assert built.trainable_params < built.total_params / 2


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("psl", [1, 16])
@pytest.mark.parametrize("head", TRAINED_HEADS)
def test_deep_prompt_parameter_formula(tiny_path: str, head: HeadType, psl: int) -> None:
    built = build_model(tiny_path, head, NUM_LABELS, "deep_prompt", {"psl": psl})
    assert built.trainable_params == psl * LAYERS * 2 * HIDDEN + head_params(head)
    names = [n for n, p in built.model.named_parameters() if p.requires_grad]
    assert all(n.startswith(("encoder.prefix_encoder.", "classifier.", "qa_outputs.")) for n in names)


@pytest.mark.parametrize("method", METHODS)
def test_retrieval_head_is_the_bare_encoder(tiny_path: str, method: str) -> None:
    built = build_model(tiny_path, HeadType.RETRIEVAL, 0, method, {"psl": 2} if "prompt" in method else {})
    names = [n for n, p in built.model.named_parameters() if p.requires_grad]
    assert not any(("classifier" in n or "qa_outputs" in n) for n in names)
    if method == "deep_prompt":
        assert built.trainable_params == 2 * LAYERS * 2 * HIDDEN  # the prefix alone
    ids, mask = batch()
    from xtuner.methods import encoder_hidden_states

    assert encoder_hidden_states(built.model, ids, mask)[-1].shape == (*ids.shape, HIDDEN)


def test_deep_prompt_projection_parameter_formula(tiny_path: str) -> None:
    psl, mlp = 4, 24
    settings = {"psl": psl, "prefix_projection": True, "prefix_hidden_size": mlp}
    built = build_model(tiny_path, HeadType.SEQUENCE_CLASSIFICATION, NUM_LABELS, "deep_prompt", settings)
    width = LAYERS * 2 * HIDDEN
    mlp_params = psl * HIDDEN + (HIDDEN * mlp + mlp) + (mlp * width + width)
    assert built.trainable_params == mlp_params + head_params(HeadType.SEQUENCE_CLASSIFICATION)


def test_xlmr_large_prefix_arithmetic() -> None:
    """xlm-roberta-large shape (24 layers, hidden 1024), built on the meta device: no weights needed."""
    config = XLMRobertaConfig(
        vocab_size=250002,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        max_position_embeddings=514,
    )
    with torch.device("meta"):
        backbone = XLMRobertaModel(config)
        model = PromptForSequenceClassification(
            DeepPromptEncoder(backbone, DeepPromptSettings(psl=16)), 3, 0.1
        )
    built = BuiltModel.wrap(model, "deep_prompt")
    assert 16 * 24 * 2 * 1024 == 786_432
    assert built.trainable_params == 786_432 + 1024 * 3 + 3
    assert built.total_params - built.trainable_params == sum(p.numel() for p in backbone.parameters())


# ---------------------------------------------------------------- reference parity


def reference_xlmr(
    backbone: XLMRobertaModel,
    ids: torch.Tensor,
    mask: torch.Tensor,
    prefix: list[tuple[torch.Tensor, torch.Tensor]],
    position_offset: int,
) -> torch.Tensor:
    """XLM-R encoder by hand; `prefix[i]` = (keys, values) [B, heads, psl, d] concatenated before layer i's K/V."""
    emb, cfg = backbone.embeddings, backbone.config
    b, t = ids.shape
    d = HIDDEN // HEADS
    psl = prefix[0][0].shape[2] if prefix else 0
    not_pad = (ids != PAD).long()
    positions = (torch.cumsum(not_pad, dim=1) + position_offset) * not_pad + PAD
    x = emb.word_embeddings.weight[ids] + emb.position_embeddings.weight[positions]
    x = x + emb.token_type_embeddings.weight[0]
    x = F.layer_norm(x, (HIDDEN,), emb.LayerNorm.weight, emb.LayerNorm.bias, cfg.layer_norm_eps)
    additive = torch.cat([torch.zeros(b, psl), (1.0 - mask.float()) * -1e9], dim=1)[:, None, None, :]

    def split_heads(h: torch.Tensor) -> torch.Tensor:
        return h.view(b, t, HEADS, d).transpose(1, 2)

    for i, layer in enumerate(backbone.encoder.layer):
        att = layer.attention.self
        q = split_heads(F.linear(x, att.query.weight, att.query.bias))
        k = split_heads(F.linear(x, att.key.weight, att.key.bias))
        v = split_heads(F.linear(x, att.value.weight, att.value.bias))
        if prefix:
            k = torch.cat([prefix[i][0], k], dim=2)
            v = torch.cat([prefix[i][1], v], dim=2)
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + additive, dim=-1)
        context = (probs @ v).transpose(1, 2).reshape(b, t, HIDDEN)
        out = layer.attention.output
        x = F.layer_norm(
            F.linear(context, out.dense.weight, out.dense.bias) + x,
            (HIDDEN,),
            out.LayerNorm.weight,
            out.LayerNorm.bias,
            cfg.layer_norm_eps,
        )
        inner = F.gelu(F.linear(x, layer.intermediate.dense.weight, layer.intermediate.dense.bias))
        ffn = layer.output
        x = F.layer_norm(
            F.linear(inner, ffn.dense.weight, ffn.dense.bias) + x,
            (HIDDEN,),
            ffn.LayerNorm.weight,
            ffn.LayerNorm.bias,
            cfg.layer_norm_eps,
        )
    return x


def ptuning_v2_prefix(flat: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """P-tuning v2 `get_prompt` layout: [psl, 2*layers*hidden] -> per layer (keys, values) [B, heads, psl, d]."""
    psl = flat.shape[0]
    kv = flat.view(psl, LAYERS * 2, HEADS, HIDDEN // HEADS).permute(1, 2, 0, 3)  # [2L, heads, psl, d]
    kv = kv.unsqueeze(1).expand(-1, batch_size, -1, -1, -1)
    return [(kv[2 * i], kv[2 * i + 1]) for i in range(LAYERS)]


@pytest.mark.parametrize(
    "settings",
    [
        {"psl": 5},
        {"psl": 3, "shift_positions": False},
        {"psl": 4, "prefix_projection": True, "prefix_hidden_size": 16},
    ],
)
def test_deep_prompt_matches_reference_attention(tiny_path: str, settings: dict) -> None:
    torch.manual_seed(1)
    built = build_model(tiny_path, HeadType.TOKEN_CLASSIFICATION, NUM_LABELS, "deep_prompt", settings)
    model = built.model.eval()
    prefix_encoder = model.encoder.prefix_encoder
    with torch.no_grad():  # a prefix large enough to matter
        for param in prefix_encoder.parameters():
            param.normal_(std=1.0)
    ids, mask = batch((9, 6))
    backbone = model.encoder.backbone
    offset = settings["psl"] if settings.get("shift_positions", True) else 0
    with torch.no_grad():
        flat = prefix_encoder.embedding.weight
        if settings.get("prefix_projection"):
            lin1, lin2 = prefix_encoder.trans[0], prefix_encoder.trans[2]
            flat = F.linear(torch.tanh(F.linear(flat, lin1.weight, lin1.bias)), lin2.weight, lin2.bias)
        expected = reference_xlmr(backbone, ids, mask, ptuning_v2_prefix(flat, 2), offset)
        sequence, _ = model.encoder(ids, mask, None)
        logits = model(input_ids=ids, attention_mask=mask).logits
        without_prefix = reference_xlmr(backbone, ids, mask, [], offset)
    torch.testing.assert_close(sequence, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logits, F.linear(expected, model.classifier.weight, model.classifier.bias))
    assert (sequence - without_prefix).abs().max() > 1e-2  # the prefix matters (1000x the tolerance)


def test_deep_prompt_pooler_head_matches_reference(tiny_path: str) -> None:
    built = build_model(tiny_path, HeadType.SEQUENCE_CLASSIFICATION, NUM_LABELS, "deep_prompt", {"psl": 2})
    model = built.model.eval()
    ids, mask = batch((7, 4))
    pooler = model.encoder.backbone.pooler.dense
    with torch.no_grad():
        flat = model.encoder.prefix_encoder.embedding.weight
        states = reference_xlmr(model.encoder.backbone, ids, mask, ptuning_v2_prefix(flat, 2), 2)
        pooled = torch.tanh(F.linear(states[:, 0], pooler.weight, pooler.bias))
        expected = F.linear(pooled, model.classifier.weight, model.classifier.bias)
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, expected)


def test_deep_prompt_position_limit(tiny_path: str) -> None:
    built = build_model(tiny_path, HeadType.SEQUENCE_CLASSIFICATION, NUM_LABELS, "deep_prompt", {"psl": 16})
    ids = torch.randint(3, VOCAB, (1, 120))  # 120 + 16 > 128 usable positions
    with pytest.raises(XtunerError, match="psl"):
        built.model(input_ids=ids, attention_mask=torch.ones_like(ids))


# ---------------------------------------------------------------- soft prompt positions


def test_soft_prompt_slices_back_to_input(tiny_path: str) -> None:
    psl = 4
    built = build_model(tiny_path, HeadType.EXTRACTIVE_QA, NUM_LABELS, "soft_prompt", {"psl": psl})
    model = built.model.eval()
    ids, mask = batch((9, 6))
    backbone, prompt = model.encoder.backbone, model.encoder.embedding.weight
    with torch.no_grad():
        embeds = torch.cat([prompt.expand(2, -1, -1), backbone.embeddings.word_embeddings(ids)], dim=1)
        full_mask = torch.cat([torch.ones(2, psl, dtype=torch.long), mask], dim=1)
        # the virtual tokens take the first positions: the first real token sits psl positions later
        not_pad = (ids != PAD).long()
        positions = torch.cat(
            [
                torch.arange(PAD + 1, PAD + 1 + psl).expand(2, -1),
                (torch.cumsum(not_pad, 1) + psl) * not_pad + PAD,
            ],
            dim=1,
        )
        states = backbone(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions)
        expected = F.linear(states.last_hidden_state[:, psl:], model.qa_outputs.weight, model.qa_outputs.bias)
        start, end = torch.tensor([2, 5]), torch.tensor([4, 5])
        out = model(input_ids=ids, attention_mask=mask, start_positions=start, end_positions=end)
    torch.testing.assert_close(out.start_logits, expected[..., 0])
    torch.testing.assert_close(out.end_logits, expected[..., 1])
    manual = (F.cross_entropy(out.start_logits, start) + F.cross_entropy(out.end_logits, end)) / 2
    torch.testing.assert_close(out.loss, manual)  # positions index the input, not input + prompt
    assert int(out.start_logits.argmax(-1).max()) < ids.shape[1]


def test_soft_prompt_token_logits_have_input_length(tiny_path: str) -> None:
    built = build_model(tiny_path, HeadType.TOKEN_CLASSIFICATION, NUM_LABELS, "soft_prompt", {"psl": 7})
    ids, mask = batch((5, 3))
    out = built.model(
        input_ids=ids, attention_mask=mask, labels=targets(HeadType.TOKEN_CLASSIFICATION, ids)["labels"]
    )
    assert out.logits.shape == (2, 5, NUM_LABELS)
    assert built.trainable_params == 7 * HIDDEN + head_params(HeadType.TOKEN_CLASSIFICATION)


# ---------------------------------------------------------------- training behaviour


@pytest.mark.parametrize("method", ["deep_prompt", "soft_prompt", "lora"])
def test_only_trainable_parameters_change(tiny_path: str, method: str) -> None:
    built = build_model(tiny_path, HeadType.TOKEN_CLASSIFICATION, NUM_LABELS, method, {})
    model = built.model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    ids, mask = batch()
    for step in range(3):
        out = model(input_ids=ids, attention_mask=mask, **targets(HeadType.TOKEN_CLASSIFICATION, ids))
        optimizer.zero_grad()
        out.loss.backward()
        if step == 0:
            assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
        optimizer.step()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert not torch.equal(param, before[name]), f"trainable {name} did not change"
        else:
            assert torch.equal(param, before[name]), f"frozen {name} changed"


def test_lora_goes_through_peft(tiny_path: str) -> None:
    settings = {"r": 4, "alpha": 8, "target_modules": ["query", "value"]}
    built = build_model(tiny_path, HeadType.SEQUENCE_CLASSIFICATION, NUM_LABELS, "lora", settings)
    assert isinstance(built.model, PeftModel)
    names = [n for n, p in built.model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or "modules_to_save" in n for n in names), names
    # XLM-R's classification head: dense (H x H) + out_proj (H x C)
    head = HIDDEN * HIDDEN + HIDDEN + HIDDEN * NUM_LABELS + NUM_LABELS
    assert built.trainable_params == LAYERS * 2 * 4 * (HIDDEN + HIDDEN) + head


@pytest.mark.parametrize("method", METHODS)
def test_padding_does_not_change_real_tokens(tiny_path: str, method: str) -> None:
    built = build_model(
        tiny_path, HeadType.TOKEN_CLASSIFICATION, NUM_LABELS, method, {"psl": 3} if "prompt" in method else {}
    )
    model = built.model.eval()
    ids, _ = batch((5,))
    padded = torch.cat([ids, torch.full((1, 4), PAD)], dim=1)
    mask = torch.cat([torch.ones(1, 5, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long)], dim=1)
    with torch.no_grad():
        short = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        long = model(input_ids=padded, attention_mask=mask).logits
    torch.testing.assert_close(long[:, :5], short, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", ["deep_prompt", "soft_prompt", "lora"])
def test_trainable_state_dict_round_trip(tiny_path: str, method: str) -> None:
    head = HeadType.SEQUENCE_CLASSIFICATION
    first = build_model(tiny_path, head, NUM_LABELS, method, {})
    with torch.no_grad():  # move away from the init so a no-op load would show
        for param in first.model.parameters():
            if param.requires_grad:
                param.normal_()
    state = first.trainable_state_dict()
    assert sorted(state) == sorted(first.trainable_names())
    assert sum(t.numel() for t in state.values()) == first.trainable_params
    if method == "deep_prompt":
        assert sorted(state) == [
            "classifier.bias",
            "classifier.weight",
            "encoder.prefix_encoder.embedding.weight",
        ]
    second = build_model(tiny_path, head, NUM_LABELS, method, {})
    ids, mask = batch()
    with torch.no_grad():
        expected = first.model.eval()(input_ids=ids, attention_mask=mask).logits
        assert not torch.allclose(second.model.eval()(input_ids=ids, attention_mask=mask).logits, expected)
        second.load_trainable_state_dict(state)
        torch.testing.assert_close(second.model(input_ids=ids, attention_mask=mask).logits, expected)
    with pytest.raises(XtunerError, match="missing"):
        second.load_trainable_state_dict(dict(list(state.items())[:1]))


def test_works_with_hf_trainer(tiny_path: str, tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    built = build_model(tiny_path, HeadType.EXTRACTIVE_QA, NUM_LABELS, "deep_prompt", {"psl": 2})
    ids, mask = batch((8, 8, 5, 7), seed=3)
    data = Dataset.from_dict(
        {
            "input_ids": ids.tolist(),
            "attention_mask": mask.tolist(),
            "start_positions": [1, 2, 3, 1],
            "end_positions": [2, 2, 4, 3],
        }
    )
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        learning_rate=1e-2,
    )
    trainer = Trainer(model=built.model, args=args, train_dataset=data, eval_dataset=data)
    before = built.trainable_state_dict()
    trainer.train()
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"])  # label names found: start/end positions
    after = built.trainable_state_dict()
    assert not torch.equal(
        before["encoder.prefix_encoder.embedding.weight"], after["encoder.prefix_encoder.embedding.weight"]
    )


# ---------------------------------------------------------------- errors


def test_registry_lists_methods() -> None:
    assert set(METHODS) <= set(method_names())
    assert get_method("deep_prompt").setting_names() == [
        "backbone_dropout",
        "prefix_dropout",
        "prefix_hidden_size",
        "prefix_projection",
        "psl",
        "shift_positions",
    ]


@pytest.mark.parametrize("method", ["finetune", "lora"])
def test_psl_is_not_a_setting_of(method: str) -> None:
    with pytest.raises(XtunerError) as err:
        validate_settings(method, {"psl": 16})
    message = str(err.value)
    assert "'psl'" in message and repr(method) in message and "valid settings" in message
    if method == "lora":
        assert "target_modules" in message


def test_bad_prompt_length() -> None:
    with pytest.raises(XtunerError, match="'psl' of method 'deep_prompt'.*greater than 0"):
        validate_settings("deep_prompt", {"psl": 0})
    assert validate_settings("soft_prompt", {"psl": 3}).psl == 3


def test_unknown_method() -> None:
    with pytest.raises(XtunerError, match="unknown method 'deep_promt'.*did you mean 'deep_prompt'"):
        validate_settings("deep_promt", {})


def test_missing_model_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(XtunerError, match="no-such-model"):
        build_model(missing, HeadType.SEQUENCE_CLASSIFICATION, NUM_LABELS, "finetune", {})
    with pytest.raises(XtunerError, match="builtin:nope"):
        build_model("builtin:nope", HeadType.SEQUENCE_CLASSIFICATION, NUM_LABELS, "deep_prompt", {})


def test_settings_checked_before_loading(tmp_path: Path) -> None:
    with pytest.raises(XtunerError, match="'psl' is not valid for method 'finetune'"):
        build_model(str(tmp_path / "missing"), HeadType.SEQUENCE_CLASSIFICATION, 2, "finetune", {"psl": 4})
