"""Our own forward passes of the decoder families we serve, over a KV cache whose rows decode at
positions of their own: what continuous batching needs and Hugging Face's generate() lacks.

The weights come from the folder's safetensors (textgen.models.checkpoint), or from Hugging Face's
loader where that reader does not know the folder in full. This module is the family table: a
Hugging Face `model_type` to the forward pass that takes its weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from textgen.models.checkpoint import read_checkpoint
from textgen.models.decoder import Decoder, decoder_tensors
from textgen.models.gpt2 import GPT2Decoder
from textgen.models.kv_cache import KVCache
from textgen.models.llama import LlamaDecoder
from textgen.models.types import AttentionCache, ForwardBatch, select_outputs

FAMILIES: dict[str, Any] = {"gpt2": GPT2Decoder, "llama": LlamaDecoder}


def load_decoder(model_dir: Path, dtype: torch.dtype, device: torch.device) -> Decoder:
    """Load a model folder (what save_pretrained writes) into our forward pass of its family:
    straight from its files where textgen.models.checkpoint knows them in full, else with Hugging
    Face's loader."""
    decoder: Decoder | None = read_checkpoint(model_dir, FAMILIES, dtype, device)
    return decoder if decoder is not None else load_with_transformers(model_dir, dtype, device)


def load_with_transformers(model_dir: Path, dtype: torch.dtype, device: torch.device) -> Decoder:
    """Hugging Face's loader, then its model's weights into our forward pass of the family."""
    from transformers import AutoModelForCausalLM  # seconds to import: only when a model loads

    hf_model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, local_files_only=True, trust_remote_code=False
    )
    family = FAMILIES.get(hf_model.config.model_type)
    if family is None:
        raise ValueError(f"no forward pass for model type {hf_model.config.model_type!r}")
    loaded: Decoder = family.from_hf(hf_model, device)
    return loaded


__all__ = [
    "FAMILIES",
    "AttentionCache",
    "Decoder",
    "ForwardBatch",
    "KVCache",
    "decoder_tensors",
    "load_decoder",
    "load_with_transformers",
    "select_outputs",
]
