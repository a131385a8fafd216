"""A short soak: bench/load.py's mix of traffic against a real server for 30 seconds, with the
same goals as the long run: no unexpected status, memory flat after warm-up, no leaked threads,
open files or engine rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.slow


def test_a_short_soak_meets_every_goal(store_dir: Path, tmp_path: Path) -> None:
    report_file = tmp_path / "load.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "load.py"),
            "--duration",
            "30",
            "--clients",
            "8",
            "--store",
            str(store_dir),
            "--output",
            str(report_file),
            # Rests of 1.5 s instead of 10.5 s: anyio stops idle worker threads after 1 s.
            "--worker-idle-s",
            "1",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    report = json.loads(report_file.read_text())

    assert done.returncode == 0, json.dumps(report, indent=2)
    assert all(report["goals_met"].values())
    assert report["worker_idle_s"] == 1
    assert sum(report["requests"].values()) > 50  # it really carried load
    assert set(report["requests"]) == {"seed", "completion", "stream", "disconnect", "invalid"}
