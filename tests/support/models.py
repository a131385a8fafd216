"""Tiny models for the tests, built once per session from configs (no model hub)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from textgen.demo.store import build_gpt2, build_llama

# A larger initializer spread makes greedy choices decisive, so float noise cannot flip a token.
TINY_GPT2: dict[str, Any] = {
    "n_layer": 2,
    "n_embd": 64,
    "n_head": 4,
    "n_positions": 128,
    "initializer_range": 0.2,
}
TINY_LLAMA: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "initializer_range": 0.2,
}


# ChatML, as many chat models write it; the tiny models' vocabulary splits its markers into pieces.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_test_store(root: Path) -> Path:
    build_gpt2(root / "gpt2-test", **TINY_GPT2)
    build_llama(root / "llama-test", **TINY_LLAMA)
    add_chat_template(build_llama(root / "llama-chat-test", seed=2, **TINY_LLAMA), CHAT_TEMPLATE)
    build_gpt2(root / "gpt2-other-seed", seed=1, **TINY_GPT2)
    # A folder that is no model this service serves, and one whose config is unreadable.
    (root / "bert-test").mkdir()
    (root / "bert-test" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (root / "broken-test").mkdir()
    (root / "broken-test" / "config.json").write_text("{not json")
    return root


def add_chat_template(model_dir: Path, template: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(model_dir)


def set_eos(model_dir: Path, token_id: int) -> None:
    """Make `token_id` the model's end-of-sequence token, in its generation config."""
    path = model_dir / "generation_config.json"
    config = json.loads(path.read_text())
    config["eos_token_id"] = token_id
    path.write_text(json.dumps(config))


def to_bfloat16(model_dir: Path) -> None:
    """Store the model's weights in bfloat16, as the demo's SmolLM2 is stored."""
    path = model_dir / "model.safetensors"
    tensors = {k: t.to(torch.bfloat16) for k, t in load_file(path).items()}
    save_file(tensors, path, metadata={"format": "pt"})
