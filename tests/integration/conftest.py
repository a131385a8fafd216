"""Fixtures shared by integration tests: models exported to TensorFlow, built once (and kept in
the test cache while what they are made of is unchanged)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.artifact_cache import (
    TEXTGEN,
    artifact_key,
    cached_artifact,
    copy_of,
    folder_digest,
)
from tests.support.models import TINY_LLAMA, to_bfloat16
from tests.support.servers import REPO_ROOT, run_textgen
from textgen.demo.store import SMOLLM2, build_gpt2, build_llama

TF_EXPORT_SOURCES = [TEXTGEN / "convert" / "tf_export.py", TEXTGEN / "manifest.py"]
TF_PACKAGES = ["tensorflow", "keras-hub", "transformers", "safetensors", "tokenizers"]


@pytest.fixture(scope="session")
def tf_store(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gpt2-test, llama-test, llama-eps and llama-tied, each with a TensorFlow export, made by the
    command users run (one process for all: TensorFlow starts once)."""
    key = artifact_key(
        [
            *TF_EXPORT_SOURCES,
            TEXTGEN / "demo" / "store.py",
            REPO_ROOT / "tests" / "support" / "models.py",
        ],
        packages=TF_PACKAGES,
        inputs=[folder_digest(store_dir / name) for name in ("gpt2-test", "llama-test")],
    )

    def build(root: Path) -> None:
        for name in ("gpt2-test", "llama-test"):
            shutil.copytree(store_dir / name, root / name)
        # The settings KerasHub's LLaMA converter ignores: an epsilon and rope base of its own.
        build_llama(root / "llama-eps", **{**TINY_LLAMA, "rms_norm_eps": 1e-3, "rope_theta": 500.0})
        # Tied embeddings in bfloat16 on disk, as SmolLM2 in the demo store.
        build_llama(root / "llama-tied", **{**TINY_LLAMA, "tie_word_embeddings": True})
        to_bfloat16(root / "llama-tied")
        names = ("gpt2-test", "llama-test", "llama-eps", "llama-tied")
        run_textgen("export-tf", *(str(root / name) for name in names))

    built = cached_artifact("tf-store", key, build)
    return copy_of(built, tmp_path_factory.mktemp("tf") / "store")


@pytest.fixture(scope="session")
def engine_store(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test models, and one slow enough (1,024 positions, 6 layers) to leave mid-way."""
    root = tmp_path_factory.mktemp("engine-store")
    for name in ("gpt2-test", "llama-test", "llama-chat-test"):
        shutil.copytree(store_dir / name, root / name)
    build_gpt2(root / "gpt2-slow", n_layer=6, n_embd=256, n_head=4)
    return root


@pytest.fixture(scope="session")
def smollm2_tf_store(
    demo_store: Path, demo_store_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """smollm2-135m with its TensorFlow export (a few minutes on 2 cores: once per change of
    what it is made of)."""
    key = artifact_key(TF_EXPORT_SOURCES, packages=TF_PACKAGES, inputs=[demo_store_key])

    def build(root: Path) -> None:
        shutil.copytree(demo_store / SMOLLM2, root / SMOLLM2)
        run_textgen("export-tf", str(root / SMOLLM2))

    built = cached_artifact("smollm2-tf", key, build)
    return copy_of(built, tmp_path_factory.mktemp("smollm2-tf") / "store")
