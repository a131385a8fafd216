"""The peer of the CPU benchmark, run: a plain greedy loop over ONNX Runtime's `session.run`,
importing neither torch nor transformers (bench/peer_export.py builds the graph)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort


class Peer:
    def __init__(self, folder: Path, threads: int) -> None:
        shape = json.loads((folder / "peer.json").read_text())
        self.layers, self.kv_heads, self.head_dim = (
            shape["layers"],
            shape["kv_heads"],
            shape["head_dim"],
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(folder / "int8.onnx"), options)

    def _empty_past(self, size: int) -> dict[str, np.ndarray]:
        shape = (size, self.kv_heads, 0, self.head_dim)
        return {
            f"past_{i}_{kind}": np.zeros(shape, dtype=np.float32)
            for i in range(self.layers)
            for kind in ("k", "v")
        }

    def _next_feeds(self, feeds: dict[str, Any], outputs: list[np.ndarray]) -> None:
        for index, value in enumerate(outputs[1:]):
            layer, kind = divmod(index, 2)
            feeds[f"past_{layer}_{'kv'[kind]}"] = value

    def generate(self, prompts: list[list[int]], new_tokens: int) -> tuple[list[list[int]], float]:
        """Greedy tokens of left-padded prompts, and when the first token was chosen."""
        size, longest = len(prompts), max(len(p) for p in prompts)
        ids = np.zeros((size, longest), dtype=np.int64)
        mask = np.zeros((size, longest), dtype=np.int64)
        positions = np.zeros((size, longest), dtype=np.int64)
        for row, prompt in enumerate(prompts):
            ids[row, longest - len(prompt) :] = prompt
            mask[row, longest - len(prompt) :] = 1
            positions[row, longest - len(prompt) :] = np.arange(len(prompt))
        feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        feeds |= {"position_ids": positions, **self._empty_past(size)}
        lengths = np.array([len(p) for p in prompts], dtype=np.int64)
        tokens: list[list[int]] = [[] for _ in prompts]
        first = 0.0
        for step in range(new_tokens):
            outputs = self.session.run(None, feeds)
            chosen = outputs[0].argmax(-1)
            first = first or time.perf_counter()
            for row, token in enumerate(chosen.tolist()):
                tokens[row].append(token)
            mask = np.concatenate([mask, np.ones((size, 1), dtype=np.int64)], 1)
            feeds = {"input_ids": chosen[:, None].astype(np.int64), "attention_mask": mask}
            feeds["position_ids"] = (lengths + step)[:, None]
            self._next_feeds(feeds, outputs)
        return tokens, first

    def log_likelihood(self, ids: list[int], start: int = 1) -> float:
        """Sum of log-probabilities of ids[start:] given what precedes each, a token at a time."""
        feeds: dict[str, Any] = self._empty_past(1)
        total = 0.0
        for position, token in enumerate(ids[:-1]):
            feeds["input_ids"] = np.array([[token]], dtype=np.int64)
            feeds["attention_mask"] = np.ones((1, position + 1), dtype=np.int64)
            feeds["position_ids"] = np.array([[position]], dtype=np.int64)
            outputs = self.session.run(None, feeds)
            logits = outputs[0][0].astype(np.float64)
            shifted = logits - logits.max()
            if position + 1 >= start:
                total += float(shifted[ids[position + 1]] - np.log(np.exp(shifted).sum()))
            self._next_feeds(feeds, outputs)
        return total
