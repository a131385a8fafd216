from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from textgen.settings import Settings


def test_environment_variables_configure_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_STORE", "/srv/models")
    monkeypatch.setenv("MAX_PROMPTS", "4")
    monkeypatch.setenv("TORCH_DTYPE", "bfloat16")

    settings = Settings()

    assert (settings.model_store, settings.max_prompts, settings.torch_dtype) == (
        "/srv/models",
        4,
        "bfloat16",
    )


def test_empty_model_store_means_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MODEL_STORE", "")

    assert Settings().model_store == str(tmp_path / ".cache" / "serverless-textgen" / "demo-store")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_PROMPTS", "0"),
        ("TORCH_DTYPE", "float8"),
        ("DEVICE", "tpu"),
        ("MAX_LOADED_MODELS", "x"),
    ],
)
def test_unsafe_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError):
        Settings()
