"""Process-wide PyTorch choices: device, dtype and how many threads the CPU really gives us."""

from __future__ import annotations

import threading

import torch

from textgen.backends.cpu import available_cpus
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
    # On a CPU, float32: its kernels give a row the same result whatever shares the batch, and
    # bfloat16's (even where native, AMX or AVX512-BF16) do not, so a request's greedy or seeded
    # text would depend on its neighbours. bfloat16 stays a choice (TORCH_DTYPE=bfloat16).
    return torch.float32
