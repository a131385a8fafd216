"""Process-wide PyTorch choices: device, dtype and how many threads the CPU really gives us."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch

from textgen.settings import Settings

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_configured = threading.Lock()
_threads_set = False


def available_cpus(cgroup_cpu_max: Path = _CGROUP_CPU_MAX) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota if one is set.

    os.cpu_count() reports the host's cores, which on Lambda or in a container can be many more
    than the process is allowed to run on; oversubscribed torch threads are much slower.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


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
    return torch.float32
