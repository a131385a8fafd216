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


def test_a_variable_is_read_whatever_the_case_of_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("max_prompts", "5")
    monkeypatch.setenv("Torch_Threads", "3")

    settings = Settings()

    assert (settings.max_prompts, settings.torch_threads) == (5, 3)
    assert Settings.model_fields["max_prompts"].default != 5  # the value came from the variable


def test_an_argument_wins_over_the_environment_which_fills_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAX_PROMPTS", "4")
    monkeypatch.setenv("MAX_BATCH_SIZE", "7")

    settings = Settings(max_prompts=9)

    assert (settings.max_prompts, settings.max_batch_size) == (9, 7)


def test_lists_are_comma_separated_and_empty_variables_are_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRELOAD_MODELS", "gpt2, smollm2:tf,")
    monkeypatch.setenv("API_KEYS", " one ,two")
    monkeypatch.setenv("COMPILE_BATCH_BUCKETS", "1,4")
    monkeypatch.setenv("TF_WARMUP_SHAPES", "1x64, 8X128")
    monkeypatch.setenv("TORCH_THREADS", "")
    monkeypatch.setenv("API_KEYS_FILE", "")

    settings = Settings()

    assert settings.preload_models == [("gpt2", "pt"), ("smollm2", "tf")]
    assert settings.api_keys == ["one", "two"]
    assert settings.compile_batch_buckets == [1, 4]
    assert settings.tf_warmup_shapes == [(1, 64), (8, 128)]
    assert (settings.torch_threads, settings.api_keys_file) == (None, None)


def test_variables_that_name_no_setting_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_STORES", "/typo")
    monkeypatch.setenv("MODEL_CONFIG", "x")  # pydantic's own attribute, not a setting

    assert Settings().model_store != "/typo"
