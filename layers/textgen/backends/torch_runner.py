"""The step engine's runner on PyTorch, eager: our decoder and its KV cache, one forward pass a
step."""

from __future__ import annotations

import numpy as np
import torch

from textgen.models import Decoder, ForwardBatch


class TorchRunner:
    """The step engine's runner: a decoder and its KV cache, rows 0..n-1 at lengths of their own."""

    def __init__(self, decoder: Decoder, pad_id: int) -> None:
        self._decoder = decoder
        self._cache = decoder.new_cache()
        self._pad_id = pad_id
        self._lengths: list[int] = []  # tokens each row holds: the position of its next token

    @property
    def kv_bytes_per_token(self) -> int:
        return self._cache.bytes_per_token

    def add_rows(self, prompts: list[list[int]], width: int, all_logits: bool) -> list[np.ndarray]:
        first = len(self._lengths)
        self._cache.reserve(first + len(prompts), width, keep_rows=first)
        batch = ForwardBatch.prefill(
            prompts, first, self._pad_id, self._decoder.device, all_logits=all_logits
        )
        with torch.inference_mode():
            logits = to_numpy(self._decoder.forward(batch, self._cache))
        self._lengths.extend(len(p) for p in prompts)
        if all_logits:
            return [logits[i, : len(p)] for i, p in enumerate(prompts)]
        return list(logits)

    def step(self, tokens: list[int]) -> np.ndarray:
        return to_numpy(self._forward_step(tokens))

    def step_greedy(self, tokens: list[int]) -> list[int]:
        chosen: list[int] = self._forward_step(tokens).argmax(-1).tolist()
        return chosen

    def _forward_step(self, tokens: list[int]) -> torch.Tensor:
        device = self._decoder.device
        batch = ForwardBatch.decode(
            torch.tensor(tokens, dtype=torch.long, device=device),
            torch.tensor(self._lengths, dtype=torch.long, device=device),
        )
        with torch.inference_mode():
            logits = self._decoder.forward(batch, self._cache)
        self._lengths = [length + 1 for length in self._lengths]
        return logits

    def move_row(self, source: int, target: int) -> None:
        self._cache.move_row(source, target, self._lengths[source])
        self._lengths[target] = self._lengths[source]

    def truncate(self, rows: int) -> None:
        del self._lengths[rows:]
        if not rows:
            self._cache.release()


def to_numpy(logits: torch.Tensor) -> np.ndarray:
    array: np.ndarray = logits.float().cpu().numpy()
    return array
