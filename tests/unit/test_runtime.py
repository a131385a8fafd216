from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from textgen.backends.cpu import available_cpus, cpu_flags
from textgen.backends.torch_runtime import select_device, select_dtype
from textgen.settings import Settings

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000\n", AFFINITY),
        ("100000 100000\n", 1),
        ("50000 100000\n", 1),  # half a CPU still gets one thread
        (f"{AFFINITY * 400000} 100000\n", AFFINITY),  # a quota above the affinity mask
        ("garbage", AFFINITY),
    ],
)
def test_available_cpus_honours_the_cgroup_quota(
    tmp_path: Path, cpu_max: str, expected: int
) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)

    assert available_cpus(path) == expected


def test_available_cpus_without_cgroup_file(tmp_path: Path) -> None:
    assert available_cpus(tmp_path / "missing") == AFFINITY


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512_bf16\n")

    assert cpu_flags.__wrapped__(cpuinfo) == frozenset({"fpu", "sse", "avx512_bf16"})


def test_dtype_is_float32_on_any_cpu_unless_set() -> None:
    """bfloat16 is never picked on a CPU by itself, native or not: its kernels' results depend on
    the batch (tests/integration/test_batching.py shows float32's do not)."""
    cpu = torch.device("cpu")

    assert select_dtype(Settings(), cpu) == torch.float32
    assert select_dtype(Settings(torch_dtype="bfloat16"), cpu) == torch.bfloat16
    assert select_device(Settings(device="cpu")) == cpu
