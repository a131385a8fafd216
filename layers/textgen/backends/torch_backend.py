"""PyTorch backend: our own forward pass of the model (textgen.models) under the step engine, so
rows of any request decode together, joining and leaving between steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from jinja2 import TemplateError
from transformers import AutoTokenizer, GenerationConfig
from transformers.utils import logging as hf_logging

from textgen.backends.base import check_prompts_fit, eos_token_ids
from textgen.backends.torch_runtime import configure_threads, select_device, select_dtype
from textgen.engine import EngineLimits, Job, StepEngine
from textgen.errors import InvalidRequest, ModelLoadFailed
from textgen.models import Decoder, ForwardBatch, load_decoder
from textgen.settings import Settings

hf_logging.disable_progress_bar()


def load_backend(model_dir: Path, settings: Settings) -> TorchBackend:
    configure_threads(settings)
    device = select_device(settings)
    dtype = select_dtype(settings, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        decoder = load_decoder(model_dir, dtype, device)
        generation_config = GenerationConfig.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadFailed(f"model at '{model_dir.name}' could not be loaded: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadFailed(f"model '{model_dir.name}' needs a fast tokenizer (tokenizer.json)")
    return TorchBackend(model_dir.name, decoder, tokenizer, generation_config, settings)


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
        device = self._decoder.device
        batch = ForwardBatch.decode(
            torch.tensor(tokens, dtype=torch.long, device=device),
            torch.tensor(self._lengths, dtype=torch.long, device=device),
        )
        with torch.inference_mode():
            logits = _to_numpy(self._decoder.forward(batch, self._cache))
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


class TorchBackend:
    """A loaded PyTorch model: its tokenizer, and the engine that generates with it."""

    def __init__(
        self,
        name: str,
        decoder: Decoder,
        tokenizer: Any,
        generation_config: GenerationConfig,
        settings: Settings,
    ) -> None:
        self._tokenizer = tokenizer
        self.context_length = decoder.context_length
        eos_ids = eos_token_ids(generation_config.eos_token_id, tokenizer.eos_token_id)
        pad_id = (
            tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else min(eos_ids, default=0)
        )
        runner = TorchRunner(decoder, pad_id)
        limits = EngineLimits(
            max_batch_size=settings.max_batch_size,
            max_queued_requests=settings.max_queued_requests,
            kv_token_budget=max(1, settings.kv_cache_max_bytes // runner.kv_bytes_per_token),
            max_prefill_tokens=settings.max_prefill_tokens,
        )
        self.engine = StepEngine(name, runner, tokenizer.backend_tokenizer, eos_ids, limits)

    def encode(
        self, prompts: list[str], max_new_tokens: int, special_tokens: bool = True
    ) -> list[list[int]]:
        encoded = self._tokenizer(prompts, add_special_tokens=special_tokens)["input_ids"]
        prompt_ids = [list(ids) for ids in encoded]
        check_prompts_fit([len(ids) for ids in prompt_ids], max_new_tokens, self.context_length)
        return prompt_ids

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        if not getattr(self._tokenizer, "chat_template", None):
            raise InvalidRequest(
                f"model '{self.engine.name}' has no chat template; use the completions API "
                "with a prompt of your own",
                field="messages",
            )
        try:
            text: str = self._tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except TemplateError as exc:  # e.g. roles in an order the template refuses
            raise InvalidRequest(
                f"the model's chat template refused these messages: {exc}", field="messages"
            ) from exc
        return text

    def token_text(self, token_id: int) -> str:
        text: str = self._tokenizer.decode([token_id])
        return text

    def check(self, job: Job) -> None:
        """Everything the engine offers works here."""
