from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from textgen.backends.torch_runtime import available_cpus, select_device, select_dtype
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


def test_dtype_defaults_to_float32_on_cpu_and_follows_the_setting() -> None:
    cpu = torch.device("cpu")

    assert select_dtype(Settings(), cpu) == torch.float32
    assert select_dtype(Settings(torch_dtype="bfloat16"), cpu) == torch.bfloat16
    assert select_device(Settings(device="cpu")) == cpu
