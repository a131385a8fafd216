"""Process-wide PyTorch choices: device, dtype and how many threads the CPU really gives us."""

from __future__ import annotations

import threading

import torch

from textgen.cpu import available_cpus, has_fast_bfloat16
from textgen.settings import Settings

_configured = threading.Lock()
_threads_set = False


def configure_threads(settings: Settings) -> int:
    global _threads_set
    with _configured:
        threads = settings.torch_threads or available_cpus()
        if not _threads_set:
            torch.set_num_threads(threads)
            _threads_set = True
        return torch.get_num_threads()


def select_device(settings: Settings) -> torch.device:
    if settings.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(settings.device)


def select_dtype(settings: Settings, device: torch.device) -> torch.dtype:
    if settings.torch_dtype != "auto":
        dtype: torch.dtype = getattr(torch, settings.torch_dtype)
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # On a CPU, bfloat16 pays only where it is native (AMX or AVX512-BF16).
    return torch.bfloat16 if has_fast_bfloat16() else torch.float32
