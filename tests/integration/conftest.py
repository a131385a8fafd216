"""Fixtures shared by integration tests: models exported to TensorFlow, once per session."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.models import TINY_LLAMA
from tests.support.servers import console_script
from textgen.demo import build_gpt2, build_llama


@pytest.fixture(scope="session")
def tf_store(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gpt2-test, llama-test and llama-eps, each with a TensorFlow export, made by the command
    users run (one process for all three: TensorFlow starts once)."""
    root = tmp_path_factory.mktemp("tf-store")
    for name in ("gpt2-test", "llama-test"):
        shutil.copytree(store_dir / name, root / name)
    # The settings KerasHub's LLaMA converter ignores: an epsilon and rope base of its own.
    build_llama(root / "llama-eps", **{**TINY_LLAMA, "rms_norm_eps": 1e-3, "rope_theta": 500.0})
    names = ("gpt2-test", "llama-test", "llama-eps")
    result = subprocess.run(
        [console_script("textgen"), "export-tf", *(str(root / name) for name in names)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture(scope="session")
def engine_store(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test models, and one slow enough (1,024 positions, 6 layers) to leave mid-way."""
    root = tmp_path_factory.mktemp("engine-store")
    for name in ("gpt2-test", "llama-test", "llama-chat-test"):
        shutil.copytree(store_dir / name, root / name)
    build_gpt2(root / "gpt2-slow", n_layer=6, n_embd=256, n_head=4)
    return root
