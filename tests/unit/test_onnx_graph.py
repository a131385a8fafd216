"""The ONNX graph builder: what it refuses, at export rather than at serving time, and how its
8-bit products for prompts quantize activations."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from textgen.errors import UnsupportedModel
from textgen.onnx_export import quantize_int8
from textgen.onnx_graph import _GraphWriter, build_graph


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


def one_product(weight: np.ndarray, int8_rows: bool) -> Any:
    """A graph of one weighted product, y = x @ weight, as the builder writes it."""
    writer = _GraphWriter(int8_rows)
    writer.linear("x", "weight", weight, None, output="y")
    rows, columns = ["rows", weight.shape[0]], ["rows", weight.shape[1]]
    graph = helper.make_graph(
        writer.nodes,
        "one_product",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, rows)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, columns)],
        initializer=writer.initializers,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def test_int8_rows_quantizes_each_token_over_its_own_range(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 32)).astype(np.float32)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    x[0] *= 1000  # a token with huge activations, as LLaMA's first token has
    x[2] = np.abs(x[2]) + 5  # one whose range lies far from zero
    exact = x @ weight
    onnx.save(one_product(weight, int8_rows=True), tmp_path / "rows.onnx")
    onnx.save(one_product(weight, int8_rows=False), tmp_path / "float32.onnx")
    quantize_int8(tmp_path / "float32.onnx", tmp_path / "tensor.onnx")  # the decoding graph's

    def errors(graph: Path) -> np.ndarray:
        session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {"x": x})
        error: np.ndarray = np.abs(y - exact).max(axis=1) / np.abs(exact).max(axis=1)
        return error

    assert (errors(tmp_path / "rows.onnx") < 0.02).all()
    # Live check: one range for the whole tensor, set by the huge token, loses the others.
    assert errors(tmp_path / "tensor.onnx")[1] > 0.1
