"""Facts about the CPU this process runs on: how many cores it may use, which instructions."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_CPUINFO = Path("/proc/cpuinfo")


def available_cpus(cgroup_cpu_max: Path = _CGROUP_CPU_MAX) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota if one is set.

    os.cpu_count() reports the host's cores, which on Lambda or in a container can be many more
    than the process is allowed to run on; oversubscribed threads are much slower.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


@lru_cache(maxsize=1)
def cpu_flags(cpuinfo: Path = _CPUINFO) -> frozenset[str]:
    """The instruction-set flags the kernel reports (empty where it reports none)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()
