"""PyTorch backend: our own forward pass of the model (textgen.models) under the step engine, so
rows of any request decode together, joining and leaving between steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from textgen.backends.step_backend import StepBackend, kv_token_budget
from textgen.backends.torch_runtime import configure_threads, select_device, select_dtype
from textgen.errors import ModelLoadFailed
from textgen.models import Decoder, ForwardBatch, load_decoder
from textgen.settings import Settings
from textgen.tokenizer import ModelTokenizer


def load_backend(model_dir: Path, settings: Settings) -> StepBackend:
    configure_threads(settings)
    device = select_device(settings)
    dtype = select_dtype(settings, device)
    tokens = ModelTokenizer(model_dir)
    try:
        decoder = load_decoder(model_dir, dtype, device)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadFailed(f"model at '{model_dir.name}' could not be loaded: {exc}") from exc
    runtime = f"torch-{str(dtype).removeprefix('torch.')}"
    if compiled(settings, device):
        return _compiled_backend(model_dir, decoder, tokens, settings, runtime)
    runner = TorchRunner(decoder, tokens.pad_id)
    return StepBackend(
        model_dir.name,
        tokens,
        runner,
        decoder.context_length,
        runner.kv_bytes_per_token,
        settings,
        runtime=runtime,
    )


def compiled(settings: Settings, device: torch.device) -> bool:
    """COMPILE: "auto" compiles on a GPU (launch-bound there), not on a CPU."""
    return settings.compile == "on" or (settings.compile == "auto" and device.type == "cuda")


def _compiled_backend(
    model_dir: Path,
    decoder: Decoder,
    tokens: ModelTokenizer,
    settings: Settings,
    runtime: str,
) -> StepBackend:
    from textgen.backends.compiled_runner import CompiledRunner

    buckets = [b for b in settings.compile_batch_buckets if b < settings.max_batch_size]
    buckets.append(settings.max_batch_size)
    per_token = decoder.new_cache().bytes_per_token
    # The cache is fixed: every row gets the same width, as much as the budget allows.
    width = min(decoder.context_length, kv_token_budget(settings, per_token) // buckets[-1])
    if width < 1:
        raise ModelLoadFailed(
            f"KV_CACHE_MAX_BYTES holds no token of '{model_dir.name}' for {buckets[-1]} rows"
        )
    cache_dir, dtype = settings.compile_cache_dir, str(decoder.dtype).removeprefix("torch.")
    # One file per model and shape of what is compiled: another configuration never clobbers it.
    shape = f"{decoder.device.type}-{dtype}-rows{'_'.join(map(str, buckets))}-width{width}"
    runner = CompiledRunner(
        decoder,
        tokens.pad_id,
        buckets,
        width,
        cache_file=None if cache_dir is None else cache_dir / f"{model_dir.name}-{shape}.bin",
    )
    return StepBackend(
        model_dir.name,
        tokens,
        runner,
        decoder.context_length,
        per_token,
        settings,
        runtime=f"{runtime}-compiled",
        max_row_tokens=width,
    )


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
            logits = _to_numpy(self._decoder.forward(batch, self._cache))
        self._lengths.extend(len(p) for p in prompts)
        if all_logits:
            return [logits[i, : len(p)] for i, p in enumerate(prompts)]
        return list(logits)

    def step(self, tokens: list[int]) -> np.ndarray:
        return _to_numpy(self._forward_step(tokens))

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


def _to_numpy(logits: torch.Tensor) -> np.ndarray:
    array: np.ndarray = logits.float().cpu().numpy()
    return array
