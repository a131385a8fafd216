"""The LLaMA training notebook runs end to end with small parameters: any cell error fails
the test, and every figure it promises is there, as a PNG file and displayed in the executed
notebook. (A file of its own: the two notebooks run side by side on the two workers.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.notebooks import assert_figures, run
from textgen.demo.store import SMOLLM2

pytestmark = pytest.mark.slow


@pytest.mark.usefixtures("export_cache")
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
