"""PyTorch backend: our own forward pass of the model (textgen.models) under the step engine, so
rows of any request decode together, joining and leaving between steps."""

from __future__ import annotations

from pathlib import Path

import torch

from textgen.backends.compiled_runner import CompiledRunner
from textgen.backends.step_backend import StepBackend, kv_token_budget
from textgen.backends.tokenizer import ModelTokenizer
from textgen.backends.torch_runner import TorchRunner
from textgen.backends.torch_runtime import configure_threads, select_device, select_dtype
from textgen.errors import ModelLoadFailed
from textgen.models import Decoder, load_decoder
from textgen.settings import Settings


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
