"""The GPU path: a static KV cache and a decode step compiled (torch.compile; CUDA graphs on a GPU)
once per batch-size bucket, at load.

Eager decoding on a GPU is launch-bound: each of hundreds of kernels per step waits on Python.
Compiled and captured as a CUDA graph, a step is one launch. That needs fixed shapes: the cache is
allocated once ([rows, kv_heads, width, head_dim] per layer, `width` the most a row may hold), a
step always reads all `width` columns (masked by each row's position), and the running rows are
padded to the next bucket (1, 2, 4, ... rows); a padding row writes into a free row of the cache,
which the next row to arrive overwrites. Rows joining and leaving change only the bucket, so
nothing recompiles after the warm-up. Prefill runs eagerly (once per request).

The compiled artifacts can be saved to and loaded from COMPILE_CACHE_DIR, so a fresh container
skips most of the compilation (textgen warm-up writes them; the GPU image can bake them in).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from textgen.backends.torch_runner import TorchRunner, to_numpy
from textgen.models import Decoder, ForwardBatch, decoder_tensors

logger = logging.getLogger(__name__)

Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class CompiledRunner(TorchRunner):
    def __init__(
        self,
        decoder: Decoder,
        pad_id: int,
        buckets: list[int],
        width: int,
        cache_file: Path | None = None,
    ) -> None:
        super().__init__(decoder, pad_id)
        self.buckets = sorted(buckets)
        self.width = width
        self._cache.reserve(self.buckets[-1], width, keep_rows=0)
        # Fixed addresses: a CUDA graph replays on the same memory, weights and cache alike.
        for tensor in [*self._cache.keys, *self._cache.values, *decoder_tensors(decoder)]:
            torch._dynamo.mark_static_address(tensor)
        self._columns = torch.arange(width, device=decoder.device)
        self._cache_file = cache_file
        mode = "reduce-overhead" if decoder.device.type == "cuda" else "default"
        self._compiled: Step = torch.compile(self._decode, mode=mode, dynamic=False, fullgraph=True)
        self.warmup_seconds = self._warm_up()

    @property
    def max_rows(self) -> int:
        return self.buckets[-1]

    def step(self, tokens: list[int]) -> np.ndarray:
        logits, _ = self._run(tokens)
        return to_numpy(logits)

    def step_greedy(self, tokens: list[int]) -> list[int]:
        _, chosen = self._run(tokens)
        result: list[int] = chosen.tolist()
        return result

    def truncate(self, rows: int) -> None:
        del self._lengths[rows:]  # the cache stays: its addresses are compiled in

    def _run(self, tokens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = len(tokens)
        bucket = next(b for b in self.buckets if b >= rows)
        device = self._decoder.device
        padded = torch.full((bucket,), self._pad_id, dtype=torch.long)
        padded[:rows] = torch.tensor(tokens, dtype=torch.long)
        positions = torch.zeros(bucket, dtype=torch.long)
        positions[:rows] = torch.tensor(self._lengths, dtype=torch.long)
        with torch.inference_mode():
            logits, chosen = self._compiled(padded.to(device), positions.to(device))
        self._lengths = [length + 1 for length in self._lengths]
        return logits[:rows], chosen[:rows]

    def _decode(
        self, tokens: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows = tokens.shape[0]
        mask = self._columns[None, None, None, :] <= positions[:, None, None, None]
        batch = ForwardBatch(
            tokens[:, None], positions[:, None], slice(0, rows), self.width, mask, None, True
        )
        logits = self._decoder.forward(batch, self._cache)
        return logits, logits.argmax(-1)

    def _warm_up(self) -> float:
        """Compile every bucket now (loading saved artifacts first, saving them after)."""
        started = time.perf_counter()
        if self._cache_file is not None and self._cache_file.is_file():
            torch.compiler.load_cache_artifacts(self._cache_file.read_bytes())
        device = self._decoder.device
        for bucket in self.buckets:
            # Two tensors, not one twice: the compiled step must not assume they alias.
            tokens = torch.zeros(bucket, dtype=torch.long, device=device)
            positions = torch.zeros(bucket, dtype=torch.long, device=device)
            with torch.inference_mode():
                self._compiled(tokens, positions)  # writes column 0 of free rows: harmless
        if self._cache_file is not None:
            self._save_artifacts(self._cache_file)
        seconds = time.perf_counter() - started
        logger.info("compiled %d batch buckets in %.1f s", len(self.buckets), seconds)
        return seconds

    @staticmethod
    def _save_artifacts(path: Path) -> None:
        saved = torch.compiler.save_cache_artifacts()
        if saved is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            partial.write_bytes(saved[0])
            partial.replace(path)
        except OSError as exc:  # a read-only cache baked into an image: use it, keep it
            logger.warning("compile cache %s not saved: %s", path, exc)
