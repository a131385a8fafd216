"""The decoder protocol every family implements, and what can be asked of any decoder."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from textgen.models.kv_cache import KVCache
from textgen.models.types import AttentionCache, ForwardBatch


class Decoder(Protocol):
    """A causal LM's forward pass over a KV cache."""

    vocab_size: int
    context_length: int
    device: torch.device
    dtype: torch.dtype
    blocks: list[Any]  # one per layer
    kv_heads: int
    head_dim: int

    def new_cache(self) -> KVCache: ...

    def forward(self, batch: ForwardBatch, cache: AttentionCache) -> torch.Tensor:
        """Logits: [batch, vocab] of each row's `last` token, or [batch, length, vocab]."""
        ...


def decoder_tensors(decoder: Any) -> list[torch.Tensor]:
    """Every tensor a decoder holds (weights, rotary tables), once each: tied weights are one."""
    found: dict[int, torch.Tensor] = {}

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            found.setdefault(id(value), value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, torch.nn.Module):
            for tensor in [*value.parameters(), *value.buffers()]:
                walk(tensor)
        elif hasattr(value, "__dataclass_fields__"):
            for item in vars(value).values():
                walk(item)

    for value in vars(decoder).values():
        walk(value)
    return list(found.values())
