from __future__ import annotations

import pytest

from textgen.errors import InvalidModelName
from textgen.store import validate_model_name


@pytest.mark.parametrize(
    "name", ["gpt2", "gpt2-tiny", "Llama-3.2-1B", "a", "model_v2.1", "x" * 128]
)
def test_valid_names(name: str) -> None:
    assert validate_model_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        "../x",
        "a/b",
        "a\\b",
        "/abs",
        ".hidden",
        "-dash",
        "a..b",
        "x" * 129,
        "a b",
        "a\x00b",
        "é",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidModelName):
        validate_model_name(name)
