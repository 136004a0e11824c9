"""The built-in tiny encoder: shipped weights load through from_pretrained, the build recipe, its cache."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from xtuner import models
from xtuner.errors import XtunerError
from xtuner.models import build as mb
from xtuner.synth.languages import LANGUAGE_CODES
from xtuner.tasks import get_task


@pytest.fixture(scope="module")
def shipped():
    return models.resolve_model("builtin:tiny-xlmr")


def test_shipped_encoder_is_verified_and_loads_through_from_pretrained(shipped):
    assert models.verify(models.shipped_dir("tiny-xlmr")) is None
    tok = AutoTokenizer.from_pretrained(shipped)
    model = AutoModelForMaskedLM.from_pretrained(shipped)
    assert type(model).__name__ == "XLMRobertaForMaskedLM"
    assert (tok.cls_token_id, tok.pad_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == len(tok) - 1
    assert len(tok) == model.config.vocab_size
    info = mb.manifest(models.shipped_dir("tiny-xlmr"))
    assert info["recipe"] == "tiny-xlmr" and info["steps"] >= 1000


def test_shipped_encoder_has_learned_the_languages(shipped):
    """MLM sanity: the pretrained model fills a masked determiner far better than chance."""
    tok = AutoTokenizer.from_pretrained(shipped)
    model = AutoModelForMaskedLM.from_pretrained(shipped).eval()
    text = get_task("synth-xnli").load("test", "en")["premise"][:64]
    enc = tok(text, return_tensors="pt", padding=True)
    labels = enc["input_ids"].clone()
    mask = (torch.rand(labels.shape, generator=torch.Generator().manual_seed(0)) < 0.15) & (
        enc["attention_mask"] > 0
    )
    mask &= labels > 3
    inputs = enc["input_ids"].masked_fill(mask, tok.mask_token_id)
    with torch.no_grad():
        logits = model(input_ids=inputs, attention_mask=enc["attention_mask"]).logits
    acc = (logits.argmax(-1)[mask] == labels[mask]).float().mean().item()
    assert acc > 0.3  # chance is 1/2000


def test_vocabulary_is_smaller_than_the_word_types_so_cognates_share_pieces(shipped):
    from xtuner.synth.corpus import corpus_lines
    from xtuner.synth.languages import LANGUAGES
    from xtuner.synth.lexicon import content_lemmas

    tok = AutoTokenizer.from_pretrained(shipped)
    words = {w for line in corpus_lines(20000) for w in line.split()}
    assert len(tok) < len(words)  # 2,000 pieces for ~3,400 word types
    shared = total = 0
    for code in ("s1", "s2", "s3", "s4"):
        lang = LANGUAGES[code]
        for lemma in content_lemmas():
            cognate = lang.stem(lemma)
            if cognate == lang._cognate(lemma) != lemma:  # a near-cognate with a spelling change
                total += 1
                shared += bool((set(tok.tokenize(lemma)) & set(tok.tokenize(cognate))) - {"▁"})
    # measured for the shipped 2,000-piece vocabulary: about 10 % (frequent words are single pieces)
    assert total > 100 and shared / total > 0.05


@pytest.mark.parametrize("lang", LANGUAGE_CODES)
def test_tokenizer_round_trip_for_every_script(shipped, lang):
    tok = AutoTokenizer.from_pretrained(shipped)
    for text in get_task("synth-xnli").load("test", lang)["premise"][:50]:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == text


def test_build_recipe_short_schedule_then_reused_from_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XTUNER_CACHE", str(tmp_path))
    path = models.build_model_dir("tiny-xlmr", seed=7, steps=3, progress=False)
    assert path == models.cached_build_dir("tiny-xlmr", 7)
    assert models.verify(path) is None
    info = mb.manifest(path)
    assert info["seed"] == 7 and info["steps"] == 3 and info["recipe_version"] == mb.RECIPE_VERSION
    model = AutoModelForMaskedLM.from_pretrained(path)
    assert model.config.hidden_size == mb.CONFIG["hidden_size"]
    stamp = (path / mb.MANIFEST).stat().st_mtime_ns
    logs = []
    again = models.build_model_dir("tiny-xlmr", seed=7, steps=3, progress=False, log=logs.append)
    assert (
        again == path and (path / mb.MANIFEST).stat().st_mtime_ns == stamp and not logs
    )  # reused, not rebuilt
    assert models.resolve_model("builtin:tiny-xlmr@7") == str(path)

    # a corrupt cache (truncated weights) is detected and rebuilt, never used silently
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert "checksum mismatch" in models.verify(path)
    rebuilt = models.build_model_dir("tiny-xlmr", seed=7, steps=3, progress=False, log=logs.append)
    assert models.verify(rebuilt) is None and any("checksum mismatch" in m for m in logs)

    # a partial build (no manifest: the build died before finishing) is rebuilt too
    (path / mb.MANIFEST).unlink()
    logs.clear()
    models.build_model_dir("tiny-xlmr", seed=7, steps=3, progress=False, log=logs.append)
    assert models.verify(path) is None and any("partial" in m for m in logs)


def test_same_seed_builds_the_same_model(tmp_path):
    a = mb.build_tiny_xlmr(tmp_path / "a", seed=3, steps=2, progress=False)
    b = mb.build_tiny_xlmr(tmp_path / "b", seed=3, steps=2, progress=False)
    ma, mb_ = (json.loads((p / mb.MANIFEST).read_text())["files"] for p in (a, b))
    assert ma["tokenizer.json"] == mb_["tokenizer.json"]
    wa = AutoModelForMaskedLM.from_pretrained(a).state_dict()
    wb = AutoModelForMaskedLM.from_pretrained(b).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bad_model_names(tmp_path):
    with pytest.raises(XtunerError, match="did you mean 'builtin:tiny-xlmr'"):
        models.resolve_model("builtin:tiny-xlm")
    with pytest.raises(XtunerError, match="does not exist"):
        models.resolve_model(str(tmp_path / "missing"))
    with pytest.raises(XtunerError, match="integer seed"):
        models.resolve_model("builtin:tiny-xlmr@x")
    assert models.resolve_model("xlm-roberta-large") == "xlm-roberta-large"  # hub ids pass to from_pretrained


def test_broken_shipped_copy_is_refused(tmp_path, monkeypatch):
    broken = tmp_path / "builtin"
    shutil.copytree(models.shipped_dir("tiny-xlmr"), broken / "tiny-xlmr")
    (broken / "tiny-xlmr" / "config.json").write_text("{}")
    monkeypatch.setattr(models, "BUILTIN_DIR", broken)
    with pytest.raises(XtunerError, match="broken"):
        models.resolve_model("builtin:tiny-xlmr")
