"""The notebooks run end to end with small parameters: any cell error fails the test, and every
figure they promise is there, as a PNG file and displayed in the executed notebook."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest

from tests.support.servers import REPO_ROOT
from textgen.demo.store import SMOLLM2

pytestmark = pytest.mark.slow

NOTEBOOKS = REPO_ROOT / "notebooks"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(name: str, output: Path, parameters: dict[str, Any]) -> nbformat.NotebookNode:
    """Execute a notebook as papermill does for a reader; raises on the first cell error."""
    executed = output / name
    papermill.execute_notebook(
        NOTEBOOKS / name,
        executed,
        parameters={**parameters, "output_dir": str(output)},
        cwd=NOTEBOOKS,
        kernel_name="python3",
        progress_bar=False,
    )
    return nbformat.read(executed, as_version=4)


def assert_figures(notebook: nbformat.NotebookNode, output: Path, names: list[str]) -> None:
    for name in names:
        data = (output / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name  # a real, drawn image
    displayed = [
        out
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]
    assert len(displayed) == len(names)


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


def test_llama_training(tmp_path: Path, demo_store: Path, download_cache: Path) -> None:
    base = demo_store / SMOLLM2
    base_files = {p.name: p.stat().st_mtime_ns for p in base.iterdir()}

    notebook = run(
        "llama_training.ipynb",
        tmp_path,
        {
            "base_model_dir": str(base),
            "download_cache": str(download_cache),
            "train_steps": 3,
            "batch_size": 2,
            "sequence_length": 64,
            "lora_rank": 4,
            "eval_tokens": 256,
            "sample_tokens": 8,
        },
    )

    assert_figures(notebook, tmp_path, ["loss_curve", "perplexity"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["train_steps"] == 3
    assert 1 < summary["held_out_perplexity_after"] < 1000
    # The fine-tuned model is a new folder, with its TensorFlow export; the base is untouched.
    tuned = tmp_path / "store" / "smollm2-135m-moby-dick"
    assert (tuned / "model.safetensors").is_file() and (tuned / "tf" / "saved_model.pb").is_file()
    assert {p.name: p.stat().st_mtime_ns for p in base.iterdir()} == base_files
