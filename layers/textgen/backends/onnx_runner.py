"""The step engine's runner on ONNX Runtime: the export's graph over a KV cache in the runner's own
memory, written in place by the graph, and how a batch's prompts are grouped into prefill calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from textgen.model_files import ONNX_EMBEDDING_INPUT, ONNX_EMBEDDING_SCALE_INPUT

# The graph's inputs a runner binds to the export's tables (textgen.backends.onnx_backend).
EMBEDDING_INPUTS = (ONNX_EMBEDDING_INPUT, ONNX_EMBEDDING_SCALE_INPUT)
# What one more prefill call costs, in padded tokens (weights read again, per-call work):
# measured on SmolLM2-135M and GPT-2 124M, 8 prompts of 3 to 17 tokens, 2 cores.
_CALL_COST_TOKENS = 16


def prefill_groups(lengths: list[int]) -> list[tuple[int, int]]:
    """Split prompts sorted by length into runs [start, stop) that each become one prefill call,
    padded to its longest: as few padded tokens as possible, each call counted as
    _CALL_COST_TOKENS more (dynamic programming over the split points)."""
    best = [0] + [0x7FFFFFFF] * len(lengths)  # best[i]: cost of the first i prompts
    split = [0] * (len(lengths) + 1)
    for stop in range(1, len(lengths) + 1):
        for start in range(stop):
            cost = best[start] + _CALL_COST_TOKENS + (stop - start) * lengths[stop - 1]
            if cost < best[stop]:
                best[stop], split[stop] = cost, start
    groups, stop = [], len(lengths)
    while stop:
        groups.append((split[stop], stop))
        stop = split[stop]
    return groups[::-1]


class OnnxRunner:
    """The step engine's runner over the export's session (textgen.convert.onnx_graph): prompts
    and decoding steps through the one graph.

    Each layer's keys and values live in one buffer per kind, [row capacity, kv_heads, column
    capacity, head_dim]: rows 0..n-1 are the running ones, each holding its tokens from column 0
    (right-padded; `_lengths` says how many). A call binds rows a..b of every buffer as both the
    past and the present of the graph, which writes the new keys and values there in place.
    Joining rows get their whole width at once (growing mid-request copied every layer's cache;
    pages not written yet cost no memory), more by doubling; buffers go when no row remains.
    A step's logits land in the runner's own buffer too.
    """

    def __init__(
        self,
        session: Any,
        metadata: dict[str, Any],
        pad_id: int,
        tables: Mapping[str, np.ndarray] | None = None,
        keep: object = None,
    ) -> None:
        self._session = session
        self._keep = keep  # what the session reads in place and does not own
        takes = {i.name for i in session.get_inputs()} & set(EMBEDDING_INPUTS)
        if takes != set(tables or {}):
            raise ValueError("the graph's embedding inputs and the tables given disagree")
        self._tables = dict(tables or {})  # bound by address: kept alive here
        self._metadata = metadata
        self._layers = int(metadata["layers"])
        self._kv_heads = int(metadata["kv_heads"])
        self._head_dim = int(metadata["head_dim"])
        self._pad_id = pad_id
        self._cache_names = [
            f"{kind}_{i}" for i in range(self._layers) for kind in ("key", "value")
        ]
        self._takes_positions = any(i.name == "position_ids" for i in session.get_inputs())
        self._buffers: list[np.ndarray] = []  # [row capacity, kv_heads, columns, head_dim]
        self._lengths = np.zeros(0, dtype=np.int64)  # tokens each row holds
        self._order: list[int] | None = None  # rows moved since the last truncate
        self._step_logits = np.zeros((0, 1, 0), dtype=np.float32)  # [row capacity, 1, vocab]
        self._vocab = int(metadata["vocab_size"])
        self._bindings: dict[tuple[int, int, bool], Any] = {}  # see _binding

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self._layers * self._kv_heads * self._head_dim * 4  # float32 keys and values

    def add_rows(self, prompts: list[list[int]], width: int, all_logits: bool) -> list[np.ndarray]:
        self._apply_moves()
        first, size = len(self._lengths), len(prompts)
        self._reserve(first + size, width)  # whole rows at once: no regrowth mid-request
        # Shortest first, in groups of similar length: a prompt is padded to its group's longest.
        order = sorted(range(size), key=lambda i: len(prompts[i]))
        logits: list[np.ndarray] = [np.empty(0)] * size
        for start, stop in prefill_groups([len(prompts[i]) for i in order]):
            group = [prompts[i] for i in order[start:stop]]
            rows = slice(first + start, first + stop)
            for index, row_logits in zip(
                order[start:stop], self._prefill_rows(rows, group, all_logits), strict=True
            ):
                logits[index] = row_logits
        sorted_lengths = np.array([len(prompts[i]) for i in order], dtype=np.int64)
        self._lengths = np.concatenate([self._lengths, sorted_lengths])
        if order != sorted(order):  # rows back in the prompts' order (applied with the next move)
            self._order = [*range(first), *(first + np.argsort(order)).tolist()]
        return logits

    def _prefill_rows(
        self, rows: slice, prompts: list[list[int]], all_logits: bool
    ) -> list[np.ndarray]:
        size, longest = len(prompts), max(len(p) for p in prompts)
        lengths = np.array([len(p) for p in prompts], dtype=np.int64)
        ids = np.full((size, longest), self._pad_id, dtype=np.int64)
        for row, prompt in enumerate(prompts):
            ids[row, : len(prompt)] = prompt
        positions = np.tile(np.arange(longest), (size, 1))
        wanted = positions if all_logits else (lengths - 1)[:, None]
        logits = self._run(rows, ids, positions, lengths, wanted)
        if all_logits:
            return [logits[row, : len(p)] for row, p in enumerate(prompts)]
        return [logits[row, 0] for row in range(size)]

    def step(self, tokens: list[int]) -> np.ndarray:
        self._apply_moves()
        size = len(tokens)
        self._reserve(size, int(np.max(self._lengths)) + 1)
        logits = self._run(
            slice(0, size),
            np.asarray(tokens, dtype=np.int64)[:, None],
            self._lengths[:, None],
            self._lengths + 1,
            np.zeros((size, 1), dtype=np.int64),
            steps=True,
        )
        self._lengths = self._lengths + 1
        # Not copied: the engine is done with a step's logits before the next step (a copy of
        # 8 rows of 50k logits is a visible part of GPT-2's step).
        result: np.ndarray = logits[:, 0]
        return result

    def move_row(self, source: int, target: int) -> None:
        # Recorded, and applied to every layer at once when the engine is done rearranging.
        if self._order is None:
            self._order = list(range(len(self._lengths)))
        self._order[target] = self._order[source]

    def truncate(self, rows: int) -> None:
        order = self._order or list(range(len(self._lengths)))
        self._order = None
        if rows == 0:
            self._buffers, self._lengths, self._bindings = [], self._lengths[:0], {}
            self._step_logits = np.zeros((0, 1, 0), dtype=np.float32)
            return
        keep = np.asarray(order[:rows])
        moved = np.flatnonzero(keep != np.arange(rows))  # only these rows are copied
        if len(moved):
            used = int(np.max(self._lengths[keep[moved]]))
            for buffer in self._buffers:  # the right side is gathered first: overlaps are safe
                buffer[moved, :, :used] = buffer[keep[moved], :, :used]
        self._lengths = self._lengths[keep]

    def _apply_moves(self) -> None:
        if self._order is not None:
            self.truncate(len(self._order))

    def _reserve(self, rows: int, columns: int) -> None:
        """Buffers with room for `rows` rows of `columns` tokens, grown by doubling."""
        have_rows, have_columns = self._buffers[0].shape[::2] if self._buffers else (0, 0)
        if rows <= have_rows and columns <= have_columns:
            return
        shape = (
            have_rows if rows <= have_rows else max(rows, 2 * have_rows),
            self._kv_heads,
            have_columns if columns <= have_columns else max(columns, 2 * have_columns, 16),
            self._head_dim,
        )
        held, used = len(self._lengths), int(np.max(self._lengths, initial=0))
        grown = [np.zeros(shape, dtype=np.float32) for _ in self._cache_names]
        for new, old in zip(grown, self._buffers, strict=False):  # none at first
            new[:held, :, :used] = old[:held, :, :used]
        self._buffers, self._bindings = grown, {}
        if shape[0] != len(self._step_logits):
            self._step_logits = np.zeros((shape[0], 1, self._vocab), dtype=np.float32)

    def _run(
        self,
        rows: slice,
        ids: np.ndarray,
        positions: np.ndarray,
        lengths: np.ndarray,
        wanted: np.ndarray,
        steps: bool = False,
    ) -> np.ndarray:
        """Run `ids` in `rows`, each row holding `lengths` tokens after the call; the logits of
        the `wanted` positions of `ids`, [rows, wanted, vocab]: an array of their own, or for a
        step (one token and its logits per row) a view of _step_logits, valid until the next
        step."""
        binding = self._binding(rows, steps)
        if not steps:
            # Their shape varies from call to call (a scored prompt's every position), so they
            # are bound anew each time, to memory of this call's own: ONNX Runtime would pass
            # the output it allocated for the binding's last call again, and fail the call
            # where the shape differs, taking the rows running beside it down.
            logits = np.empty((len(ids), wanted.shape[1], self._vocab), dtype=np.float32)
            shape = list(logits.shape)
            binding.bind_output("logits", "cpu", 0, np.float32, shape, logits.ctypes.data)
        small = {
            "input_ids": ids,
            "seqlens_k": (lengths - 1).astype(np.int32),
            "total_sequence_length": np.array(lengths.max(), dtype=np.int32),
            "logit_positions": np.ascontiguousarray(wanted, dtype=np.int64),
        }
        if self._takes_positions:
            small["position_ids"] = np.ascontiguousarray(positions, dtype=np.int64)
        for name, array in small.items():
            binding.bind_cpu_input(name, array)
        self._session.run_with_iobinding(binding)
        return self._step_logits[rows] if steps else logits

    def _binding(self, rows: slice, steps: bool) -> Any:
        """The session's binding of these rows of the buffers, as past and present of every
        layer: made once while the buffers and rows stay (binding 4 x layers tensors anew
        each step is a visible part of a one-row step). A binding for steps writes its logits
        into _step_logits; any other gets them bound by each call (_run)."""
        key = (rows.start, rows.stop, steps)
        binding = self._bindings.get(key)
        if binding is None:
            binding = self._session.io_binding()
            if steps:
                logits = self._step_logits[rows]
                shape = list(logits.shape)
                binding.bind_output("logits", "cpu", 0, np.float32, shape, logits.ctypes.data)
            for name, table in self._tables.items():
                shape = list(table.shape)
                binding.bind_input(name, "cpu", 0, table.dtype, shape, table.ctypes.data)
            for name, buffer in zip(self._cache_names, self._buffers, strict=True):
                part = buffer[rows]  # rows are the first axis: a contiguous block
                for role in ("past", "present"):  # the same memory: written in place
                    bind = binding.bind_input if role == "past" else binding.bind_output
                    shape = list(part.shape)
                    bind(f"{role}_{name}", "cpu", 0, np.float32, shape, part.ctypes.data)
            self._bindings[key] = binding
        return binding
