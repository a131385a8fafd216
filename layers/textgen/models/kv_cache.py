"""Keys and values of the rows a model is decoding, one dense buffer per layer.

Each layer's keys (and values) are one tensor [rows, kv_heads, width, head_dim]: row r holds its
sequence's tokens at columns 0..length-1, each row at a length of its own, so a request can join
between steps without re-padding anyone. Running rows are kept as a prefix 0..n-1 of the buffer
(a finished row is replaced by the last one), so a step reads a view, never a gathered copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from textgen.models.types import ForwardBatch


class KVCache:
    def __init__(
        self,
        layers: int,
        kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.layers = layers
        self.kv_heads = kv_heads
        self.head_dim = head_dim
        self.dtype = dtype
        self.device = device
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.row_capacity = 0
        self.width_capacity = 0

    @property
    def bytes_per_token(self) -> int:
        """Memory one token of one row takes, keys and values of every layer."""
        element = torch.empty((), dtype=self.dtype).element_size()
        return 2 * self.layers * self.kv_heads * self.head_dim * element

    def reserve(self, rows: int, width: int, keep_rows: int) -> None:
        """Room for `rows` rows of `width` columns, keeping the first `keep_rows` rows' contents."""
        if rows <= self.row_capacity and width <= self.width_capacity:
            return
        new_rows, new_width = max(rows, self.row_capacity), max(width, self.width_capacity)
        shape = (new_rows, self.kv_heads, new_width, self.head_dim)
        # Zeros, not empty memory: masked columns still meet the values in the matrix products,
        # and a stray NaN there would turn 0 x NaN into NaN.
        keys = [
            torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.layers)
        ]
        values = [
            torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.layers)
        ]
        if keep_rows and self.keys:
            old_width = self.width_capacity
            for new, old in zip(keys + values, self.keys + self.values, strict=True):
                new[:keep_rows, :, :old_width] = old[:keep_rows]
        self.keys, self.values = keys, values
        self.row_capacity, self.width_capacity = new_rows, new_width

    def _zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    def write(
        self, layer: int, rows: slice, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> None:
        """Store k and v, [batch, length, kv_heads, head_dim], at each row's own positions."""
        batch = torch.arange(k.shape[0], device=self.device).unsqueeze(1)
        self.keys[layer][rows][batch, :, positions] = k
        self.values[layer][rows][batch, :, positions] = v

    def read(self, layer: int, rows: slice, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of the rows' keys and values over the first `width` columns."""
        return self.keys[layer][rows, :, :width], self.values[layer][rows, :, :width]

    def attend(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        batch: ForwardBatch,
        scale: float,
    ) -> torch.Tensor:
        self.write(layer, batch.rows, batch.positions, k, v)
        keys, values = self.read(layer, batch.rows, batch.width)
        heads = q.shape[2]
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            keys,
            values,
            attn_mask=batch.mask,
            scale=scale,
            enable_gqa=heads != keys.shape[1],
        )
        return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], heads * q.shape[3])

    def move_row(self, source: int, target: int, width: int) -> None:
        """Copy row `source` over row `target` (its first `width` columns are what it uses)."""
        for tensor in self.keys + self.values:
            tensor[target, :, :width] = tensor[source, :, :width]

    def release(self) -> None:
        """Give the memory back (when no row is running)."""
        self.keys, self.values = [], []
        self.row_capacity = self.width_capacity = 0
