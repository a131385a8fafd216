"""What the ONNX graph builder refuses, at export rather than at serving time."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from textgen.errors import UnsupportedModel
from textgen.onnx_graph import build_graph


def decoder(**overrides: object) -> SimpleNamespace:
    # No weights: a refusal must come before any is read.
    fields: dict[str, object] = {"blocks": [], "kv_heads": 1, "head_dim": 64}
    return SimpleNamespace(**{**fields, **overrides})


@pytest.mark.parametrize(
    ("family", "fields", "refused"),
    [
        ("llama", {"activation_name": "gelu"}, "activation 'gelu'"),
        ("llama", {"activation_name": "silu", "head_dim": 24}, "head size 24"),
        ("gpt2", {"activation_name": "relu"}, "activation 'relu'"),
        ("mistral", {}, "'mistral'"),
    ],
)
def test_what_the_graph_cannot_express_is_refused(
    family: str, fields: dict[str, object], refused: str
) -> None:
    with pytest.raises(UnsupportedModel, match=refused):
        build_graph(decoder(**fields), family)


@pytest.mark.parametrize(
    ("family", "activation"), [("llama", "silu"), ("gpt2", "gelu_new"), ("gpt2", "gelu")]
)
def test_what_it_can_express_gets_past_the_checks(family: str, activation: str) -> None:
    # Live check of the one above: a supported model goes on to read its weights.
    with pytest.raises(AttributeError):
        build_graph(decoder(activation_name=activation), family)
