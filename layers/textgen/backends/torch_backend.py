"""PyTorch backend: a Hugging Face causal LM generating a whole request as one left-padded batch."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from transformers.utils import logging as hf_logging

from textgen.backends.base import Completion, check_prompts_fit, completion_from_ids
from textgen.backends.torch_runtime import configure_threads, select_device, select_dtype
from textgen.errors import ModelLoadFailed
from textgen.settings import Settings

hf_logging.disable_progress_bar()


def load_generator(model_dir: Path, settings: Settings) -> TorchTextGenerator:
    configure_threads(settings)
    device = select_device(settings)
    dtype = select_dtype(settings, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=dtype, local_files_only=True, trust_remote_code=False
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadFailed(f"model at '{model_dir.name}' could not be loaded: {exc}") from exc
    model.to(device).eval()
    return TorchTextGenerator(model, tokenizer, device)


class TorchTextGenerator:
    def __init__(self, model: Any, tokenizer: Any, device: torch.device) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._device = device
        # Left padding keeps every prompt's last token at the end of the row, where generation
        # continues; the attention mask (and position ids derived from it) hide the padding.
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self._eos_ids = _eos_token_ids(model.generation_config, tokenizer)
        self._generation_config = _greedy_config(model.generation_config, self._tokenizer)
        # One batch at a time per model: concurrent batches would only fight over the same cores.
        self._lock = threading.Lock()

    @property
    def context_length(self) -> int:
        length = getattr(self._model.config, "max_position_embeddings", None)
        return int(length) if length else int(self._tokenizer.model_max_length)

    def generate(
        self, prompts: list[str], max_new_tokens: int, time_budget: float | None = None
    ) -> list[Completion]:
        batch = self._tokenizer(prompts, return_tensors="pt", padding=True)
        check_prompts_fit(
            batch["attention_mask"].sum(dim=1).tolist(), max_new_tokens, self.context_length
        )
        batch = batch.to(self._device)
        prompt_width = batch["input_ids"].shape[1]
        config = copy.deepcopy(self._generation_config)
        config.max_new_tokens = max_new_tokens
        config.max_time = time_budget
        with self._lock, torch.inference_mode():
            output = self._model.generate(**batch, generation_config=config)
        return [
            completion_from_ids(
                row[prompt_width:].tolist(), max_new_tokens, self._eos_ids, self._decode
            )
            for row in output.cpu()
        ]

    def _decode(self, ids: list[int]) -> str:
        text: str = self._tokenizer.decode(ids, skip_special_tokens=True)
        return text


def _eos_token_ids(generation_config: GenerationConfig, tokenizer: Any) -> frozenset[int]:
    eos = generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return frozenset()
    return frozenset(eos if isinstance(eos, list) else [eos])


def _greedy_config(base: GenerationConfig, tokenizer: Any) -> GenerationConfig:
    # The model's own generation_config may ask for sampling; this service is greedy by default.
    config = GenerationConfig.from_dict(base.to_dict())
    config.do_sample = False
    config.num_beams = 1
    config.temperature = None
    config.top_p = None
    config.top_k = None
    config.pad_token_id = tokenizer.pad_token_id
    return config
