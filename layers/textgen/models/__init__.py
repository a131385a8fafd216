"""Our own forward passes of the decoder families we serve, over a KV cache whose rows decode at
positions of their own: what continuous batching needs and Hugging Face's generate() lacks.

Weights and configs still come from Hugging Face's loaders; only the forward pass is ours. This
module is the family table: a Hugging Face `model_type` to the forward pass that takes its weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from textgen.models.decoder import Decoder, decoder_tensors
from textgen.models.gpt2 import GPT2Decoder
from textgen.models.kv_cache import KVCache
from textgen.models.llama import LlamaDecoder
from textgen.models.types import AttentionCache, ForwardBatch, select_outputs

FAMILIES: dict[str, Any] = {"gpt2": GPT2Decoder, "llama": LlamaDecoder}


def load_decoder(model_dir: Path, dtype: torch.dtype, device: torch.device) -> Decoder:
    """Load a model folder (what save_pretrained writes) with Hugging Face's loader, then take its
    weights into our forward pass of the same family."""
    from transformers import AutoModelForCausalLM  # seconds to import: only when a model loads

    hf_model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, local_files_only=True, trust_remote_code=False
    )
    family = FAMILIES.get(hf_model.config.model_type)
    if family is None:
        raise ValueError(f"no forward pass for model type {hf_model.config.model_type!r}")
    decoder: Decoder = family.from_hf(hf_model, device)
    return decoder


__all__ = [
    "FAMILIES",
    "AttentionCache",
    "Decoder",
    "ForwardBatch",
    "KVCache",
    "decoder_tensors",
    "load_decoder",
    "select_outputs",
]
