"""The configs KerasHub's converters would get wrong are refused before any export."""

from __future__ import annotations

from typing import Any

import pytest

from textgen.convert.tf_export import check_backbone, convertible_config
from textgen.errors import UnsupportedModel

GPT2 = {
    "model_type": "gpt2",
    "n_embd": 64,
    "n_inner": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
}
LLAMA = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_attention_heads": 4,
    "head_dim": 16,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
    "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
}


def test_supported_configs_and_the_settings_passed_explicitly() -> None:
    assert convertible_config(GPT2) == {}
    assert convertible_config(LLAMA) == {
        "layer_norm_epsilon": 1e-5,
        "rope_max_wavelength": 500000.0,
    }
    # Tied embeddings (SmolLM2's) convert: KerasHub reads the logits off the token embeddings.
    assert convertible_config({**LLAMA, "tie_word_embeddings": True}) == convertible_config(LLAMA)


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({**GPT2, "n_inner": 100}, "n_inner"),
        ({**GPT2, "activation_function": "relu"}, "activation_function"),
        ({**GPT2, "layer_norm_epsilon": 1e-6}, "layer_norm_epsilon"),
        ({**LLAMA, "rope_parameters": {"rope_type": "llama3", "rope_theta": 1.0}}, "rope type"),
        ({**GPT2, "tie_word_embeddings": False}, "tie_word_embeddings"),
        ({**LLAMA, "attention_bias": True}, "attention_bias"),
        ({**LLAMA, "head_dim": 32}, "head_dim"),
        ({"model_type": "bert"}, "gpt2 or llama only"),
    ],
)
def test_unsupported_configs_are_refused(config: dict[str, Any], words: str) -> None:
    with pytest.raises(UnsupportedModel, match=words):
        convertible_config(config)


def test_a_built_model_unlike_the_pytorch_one_is_refused() -> None:
    config = {**GPT2, "vocab_size": 100, "n_layer": 2, "n_head": 4, "n_positions": 128}
    built = {
        "vocabulary_size": 100,
        "num_layers": 2,
        "num_heads": 4,
        "hidden_dim": 64,
        "intermediate_dim": 256,
        "max_sequence_length": 128,
    }

    check_backbone(built, config)  # the same model: accepted
    with pytest.raises(UnsupportedModel, match="num_layers=3 where n_layer=2"):
        check_backbone({**built, "num_layers": 3}, config)
    with pytest.raises(UnsupportedModel, match="not 4 x n_embd"):
        check_backbone({**built, "intermediate_dim": 128}, config)


def test_tied_embeddings_must_be_built_tied() -> None:
    config = {**LLAMA, "vocab_size": 100, "num_hidden_layers": 2, "intermediate_size": 128}
    built = {
        "vocabulary_size": 100,
        "num_layers": 2,
        "num_query_heads": 4,
        "num_key_value_heads": 4,
        "hidden_dim": 64,
        "intermediate_dim": 128,
    }

    check_backbone({**built, "tie_word_embeddings": True}, {**config, "tie_word_embeddings": True})
    check_backbone(
        {**built, "tie_word_embeddings": False}, {**config, "tie_word_embeddings": False}
    )
    with pytest.raises(UnsupportedModel, match="tie_word_embeddings=False where"):
        check_backbone(
            {**built, "tie_word_embeddings": False}, {**config, "tie_word_embeddings": True}
        )
    with pytest.raises(UnsupportedModel, match="tie_word_embeddings=True where"):
        check_backbone(
            {**built, "tie_word_embeddings": True}, {**config, "tie_word_embeddings": False}
        )
