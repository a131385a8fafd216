"""What a forward pass of any family takes: the batch of tokens it runs, and attention over the
KV cache that holds the rows' keys and values."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import torch


@dataclass(frozen=True)
class ForwardBatch:
    """One forward pass: `tokens` of some cache rows, each token at its own position.

    A token at position p is written to cache column p and attends to columns 0..p of its row.
    """

    tokens: torch.Tensor  # [batch, length] token ids
    positions: torch.Tensor  # [batch, length]
    rows: slice  # the cache rows of the batch, in order
    width: int  # cache columns attention reads: the largest position + 1
    mask: torch.Tensor  # [batch, 1, length, width] True where a token may attend
    # Indices of the tokens whose logits are wanted: [batch] (one each) or [batch, k]; None: all.
    last: torch.Tensor | None
    is_decode: bool = False  # one token per row, its logits wanted

    @classmethod
    def prefill(
        cls,
        prompts: list[list[int]],
        first_row: int,
        pad_id: int,
        device: torch.device,
        all_logits: bool = False,
    ) -> ForwardBatch:
        """New rows `first_row`.. taking their prompts, right-padded: logits of each prompt's
        last token, or of every token with `all_logits`."""
        longest = max(len(p) for p in prompts)
        tokens = torch.tensor(
            [p + [pad_id] * (longest - len(p)) for p in prompts], dtype=torch.long, device=device
        )
        positions = torch.arange(longest, device=device).expand(len(prompts), longest)
        last = None
        if not all_logits:
            last = torch.tensor([len(p) - 1 for p in prompts], dtype=torch.long, device=device)
        return cls._build(tokens, positions, slice(first_row, first_row + len(prompts)), last)

    @classmethod
    def decode(cls, tokens: torch.Tensor, positions: torch.Tensor) -> ForwardBatch:
        """One new token for each of rows 0..n-1, at each row's own position."""
        batch = cls._build(tokens[:, None], positions[:, None], slice(0, len(tokens)), None)
        return replace(batch, is_decode=True)

    @classmethod
    def _build(
        cls,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        rows: slice,
        last: torch.Tensor | None,
    ) -> ForwardBatch:
        width = int(positions.max()) + 1
        columns = torch.arange(width, device=positions.device)
        mask = (columns[None, None, :] <= positions[:, :, None]).unsqueeze(1)
        return cls(tokens, positions, rows, width, mask, last)


class AttentionCache(Protocol):
    """Where a layer's keys and values go, and attention over them: the KV cache of the rows
    being served (KVCache)."""

    def attend(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        batch: ForwardBatch,
        scale: float,
    ) -> torch.Tensor:
        """Store this step's keys and values, then attend over the rows' cache. q, k, v:
        [batch, length, heads (or kv_heads), head_dim]; returns [batch, length, heads * dim]."""
        ...


def select_outputs(hidden: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
    """The hidden states whose logits are wanted: [batch, hidden] of each row's last token (or
    of the one token of a decode step), else all of them, [batch, length, hidden]."""
    if batch.last is not None:
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows.view(-1, *([1] * (batch.last.dim() - 1))), batch.last]
    return hidden[:, 0] if batch.is_decode else hidden
