"""A short soak: bench/load.py's mix of traffic against a real server for 30 seconds, with the
same goals as the long run: no unexpected status, memory flat after warm-up (on PyTorch), no
leaked threads, open files or engine rows; on the ONNX path, the same answer to a request each
time it comes.
With the ONNX runner before its fix (a scored prompt on rows another request had used failed,
and every request beside it), 109 of some 1,200 requests got a 500 here; with scored prompts
sampling their tokens after it, the answers check found changed answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("path", ["onnx", "torch"])
def test_a_short_soak_meets_its_goals(path: str, store_dir: Path, tmp_path: Path) -> None:
    # The default path, where a request sent again must get the same answer whatever ran beside
    # it (the benchmark builds the test models and exports every one the mix uses: one served
    # by PyTorch would not hold it); and PyTorch, for a model folder without an export.
    exact = path == "onnx"
    report_file = tmp_path / "load.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "load.py"),
            "--duration",
            "30",
            "--clients",
            "8",
            *(["--exact"] if exact else ["--store", str(store_dir)]),
            "--output",
            str(report_file),
            # Rests of 1.5 s instead of 10.5 s: anyio stops idle worker threads after 1 s.
            "--worker-idle-s",
            "1",
            # 15 s after a 15 s warm-up, allocators are still reaching the traffic's shapes: the
            # PyTorch path grew 5.2% once here (180 s runs end below their post-warm-up figure,
            # docs/reliability.md). A leak of what requests hold is far above 15%: each step's
            # logits kept (PyTorch's runner patched to) grew it by 92% here.
            "--memory-growth-limit",
            "0.15",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    report = json.loads(report_file.read_text())

    # On the ONNX path a 30-second window's resident memory moves with its allocators settling
    # to the shapes the traffic brings (+2% to +13% in runs here) by more than the 5% bound; it
    # is no leak (docs/reliability.md: the runner alone cycling its shapes stays flat, a 360 s
    # soak ends below its post-warm-up figure), so it is judged by the benchmark's long runs.
    goals = {k: met for k, met in report["goals_met"].items() if k != "memory_flat" or not exact}
    assert all(goals.values()), json.dumps(report, indent=2)
    assert (done.returncode == 0) is all(report["goals_met"].values()), done.stderr[-2000:]
    assert report["worker_idle_s"] == 1
    assert sum(report["requests"].values()) > 50  # it really carried load
    assert set(report["requests"]) == {
        "seed",
        "completion",
        "stream",
        "scored",
        "disconnect",
        "invalid",
    }
    assert report["exact"] is exact
    if exact:
        assert report["answers_compared"] > 50  # the same requests really came again
