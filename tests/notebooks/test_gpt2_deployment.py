"""The GPT-2 deployment notebook runs end to end with small parameters: any cell error fails
the test, and every figure it promises is there, as a PNG file and displayed in the executed
notebook. (A file of its own: the two notebooks run side by side on the two workers.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.notebooks import assert_figures, run

pytestmark = pytest.mark.slow


@pytest.mark.usefixtures("export_cache")
def test_gpt2_deployment(tmp_path: Path) -> None:
    notebook = run(
        "gpt2_deployment.ipynb",
        tmp_path,
        {
            "random_gpt2": {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 128},
            "prompts_per_request": [1, 2],
            "max_tokens": 8,
        },
    )

    assert_figures(notebook, tmp_path, ["lambda_timing", "throughput"])
