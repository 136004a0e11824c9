"""A model folder is checked before anything trains on it, so that a broken one is an error, never silent nonsense.

- `load_tokenizer`: ``AutoTokenizer.from_pretrained`` with every failure (a truncated or garbage ``tokenizer.json``,
  a missing vocabulary) as one XtunerError naming the folder; then `check_vocab`.
- `check_tokenizer_files`: a local model folder must hold a tokenizer (``tokenizer.json`` or a vocabulary file).
  Without one, transformers builds a tokenizer of the special tokens alone and every word becomes ``<unk>``.
- `check_vocab`: the tokenizer's vocabulary must fit the model's embeddings (ids past them index nothing) and fill
  at least `MIN_VOCAB_SHARE` of them (a smaller one is another model's tokenizer, or a stub of special tokens).
  Models often pad their embedding matrix a little past the vocabulary (T5: 32,128 rows for 32,100 tokens).
- `check_weights`: every ``*.safetensors`` file has a readable header and holds all the bytes it declares (a
  truncated download or a garbage file), and the word embeddings have the config's shape.
- `max_positions` / `check_max_seq_length`: the number of tokens the model can take; ``max_seq_length`` must not
  exceed it (it would crash at the first long input, deep into a sweep). A prompt method shifts the input's
  positions by its prompt length (`MethodSettings.position_offset`): then ``max_seq_length + psl`` must fit.
- `known_config`: the position limit of a few well-known hub models (XLM-R, mBERT), so that the dry run checks
  lengths even when their config is not in the Hugging Face cache here.
- `model_config`: the ``config.json`` of a model that can be read without the network (a built-in, a local folder,
  or a hub id already in the Hugging Face cache), else None; the dry run checks what it can with it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from xtuner.errors import XtunerError

MIN_VOCAB_SHARE = 0.5
TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model", "vocab.txt",
                   "vocab.json")  # fmt: skip
ROBERTA_LIKE = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "roberta-prelayernorm",
                "data2vec-text", "xmod", "bart", "mbart")  # learned positions offset by padding_idx + 1
EMBEDDING_KEYS = ("embeddings.word_embeddings.weight", "shared.weight", "embed_tokens.weight")


def model_config(model_path: str) -> SimpleNamespace | None:
    """The model's ``config.json`` (as attributes) from its folder or the Hugging Face cache, without the network and
    without importing transformers (the dry run uses it); None when it is not available here."""
    folder = Path(model_path).expanduser()
    if folder.is_dir():
        path: Path | None = folder / "config.json"
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(model_path, "config.json")
        except Exception:  # noqa: BLE001 - not a repo id, no cache: nothing to check here
            found = None
        path = Path(found) if isinstance(found, str) else None
    if path is None or not path.is_file():
        return None
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise XtunerError(f"model {model_path}: {path.name} is not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise XtunerError(f"model {model_path}: {path.name} is not a JSON object")
    return SimpleNamespace(**raw)


def check_model(model_path: str, name: str, *, trust_remote_code: bool = False, tokenizer: bool = True) -> Any:
    """File-level checks of a model that is available without the network (see the module doc); returns its config
    (None when it is not available here). `tokenizer`: also load the tokenizer (imports transformers)."""
    config = model_config(model_path)
    if config is None:
        return None
    check_weights(model_path, config)
    if tokenizer:
        load_tokenizer(model_path, name, trust_remote_code=trust_remote_code)
    return config


def check_tokenizer_files(model_path: str) -> None:
    folder = Path(model_path).expanduser()
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise XtunerError(f"model folder {model_path} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); "
                          "without them every word would become <unk>. Save the tokenizer there too "
                          "(tokenizer.save_pretrained)")  # fmt: skip


def load_tokenizer(model_path: str, name: str, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    check_tokenizer_files(model_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - OSError, JSONDecodeError, tokenizers' Exception: all a broken folder
        reason = " ".join(str(e).split())[:300]
        raise XtunerError(f"cannot load the tokenizer of model {name!r} ({model_path}): {type(e).__name__}: "
                          f"{reason}") from None  # fmt: skip
    config = model_config(model_path)
    if config is not None:
        check_vocab(len(tokenizer), getattr(config, "vocab_size", None), name)
    return tokenizer


def check_vocab(tokens: int, vocab_size: int | None, name: str) -> None:
    if not vocab_size:
        return
    if tokens > vocab_size:
        raise XtunerError(f"model {name!r}: its tokenizer has {tokens:,} tokens but the model has only {vocab_size:,} "
                          "embeddings; ids past them index nothing (a tokenizer from another model?)")  # fmt: skip
    if tokens < MIN_VOCAB_SHARE * vocab_size:
        raise XtunerError(f"model {name!r}: its tokenizer has {tokens:,} tokens for {vocab_size:,} embeddings; it is "
                          "not this model's tokenizer (missing or stub tokenizer files?)")  # fmt: skip


def max_positions(config: Any) -> int | None:
    """Tokens per input the model takes (None: not bounded by learned positions, or unknown)."""
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int) or n <= 0:
        return None
    if getattr(config, "position_biased_input", True) is False:  # DeBERTa-v2: relative positions only
        return None
    if getattr(config, "model_type", "") in ROBERTA_LIKE:
        n -= (getattr(config, "pad_token_id", None) or 0) + 1
    return n


def check_max_seq_length(max_seq_length: int, config: Any, name: str, *, psl: int = 0, label: str = "") -> None:
    """`max_seq_length` (plus `psl` positions a prompt method puts before the input) within the model's positions;
    `label` (e.g. "task udpos, method deep_prompt") starts the message of a prompt that does not fit."""
    limit = max_positions(config)
    if limit is None:
        return
    if max_seq_length > limit:
        raise XtunerError(f"max_seq_length {max_seq_length:,} is more than model {name!r} takes ({limit:,} tokens, "
                          f"from max_position_embeddings {config.max_position_embeddings:,})")  # fmt: skip
    if psl and max_seq_length + psl > limit:
        fixes = [f"max_seq_length to {limit - psl:,}" if limit - psl >= 16 else "max_seq_length"]
        fixes += [f"psl to {limit - max_seq_length:,}"] if limit > max_seq_length else []
        raise XtunerError(f"{label + ': ' if label else ''}psl {psl} + max_seq_length {max_seq_length:,} = "
                          f"{psl + max_seq_length:,} positions, more than model {name!r} takes ({limit:,} tokens, "
                          f"from max_position_embeddings {config.max_position_embeddings:,}); the prompt shifts the "
                          f"input's positions by psl: lower {' or '.join(fixes)}")  # fmt: skip


_XLMR = {"model_type": "xlm-roberta", "max_position_embeddings": 514, "pad_token_id": 1}
_MBERT = {"model_type": "bert", "max_position_embeddings": 512, "pad_token_id": 0}
KNOWN_CONFIGS = {  # the position fields of their config.json on the hub
    **{f"{org}xlm-roberta-{size}": _XLMR for org in ("", "FacebookAI/") for size in ("base", "large")},
    **{f"{org}bert-base-multilingual-{case}": _MBERT for org in ("", "google-bert/") for case in ("cased", "uncased")},
}  # fmt: skip


def known_config(name: str) -> SimpleNamespace | None:
    """The position fields of a well-known hub model (`KNOWN_CONFIGS`), for when its config is not available here."""
    fields = KNOWN_CONFIGS.get(name)
    return SimpleNamespace(**fields) if fields is not None and not Path(name).expanduser().exists() else None


def check_weights(model_path: str, config: Any | None = None) -> None:
    """Headers of the folder's safetensors files: readable, fully backed by data, embeddings shaped as the config
    says. Reads headers only (a few kB), not the weights."""
    folder = Path(model_path).expanduser()
    if not folder.is_dir():
        return
    files = sorted(folder.glob("*.safetensors"))
    for f in files:
        header = _header(f)
        if config is None:
            continue
        for key, info in header.items():
            if key.endswith(EMBEDDING_KEYS) and isinstance(info, dict):
                shape = info.get("shape") or []
                want = [getattr(config, "vocab_size", None), getattr(config, "hidden_size", None)]
                if len(shape) == 2 and None not in want and shape != want:
                    raise XtunerError(f"model folder {model_path}: {f.name} holds {key} of shape {shape}, but "
                                      f"config.json says vocab_size x hidden_size = {want}; the config does not "
                                      "belong to these weights")  # fmt: skip


def _header(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError("shorter than a safetensors header")
            (n,) = struct.unpack("<Q", raw)
            if n > min(size - 8, 100_000_000):
                raise ValueError("header length past the end of the file")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as e:
        raise XtunerError(f"model weights {path} are not a safetensors file ({e}); download or save them again") \
            from None  # fmt: skip
    if 8 + n + end > size:
        raise XtunerError(f"model weights {path} are truncated ({size:,} of {8 + n + end:,} bytes); download or save "
                          "them again")  # fmt: skip
    return header
