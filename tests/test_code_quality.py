"""ruff and mypy are part of the test suite, so CI holds the code to them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.artifact_cache import cache_root
from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.slow


# mypy keeps its incremental cache (which checks each file's content itself) in the test cache.
@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy", "--cache-dir", str(cache_root() / "mypy")],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_code_quality(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
