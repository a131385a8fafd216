from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from handlers.factory import create_app
from tests.support.models import build_test_store
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
