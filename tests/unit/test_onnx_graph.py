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

from tests.support.ort_quantizer import int8_weights, quantize_int8
from textgen.convert.onnx_graph import Int8Weight, build_graph
from textgen.convert.onnx_writer import GraphWriter
from textgen.errors import UnsupportedModel


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


def one_product(
    weight: np.ndarray,
    int8: dict[str, Int8Weight] | None = None,
    float_channels: dict[str, np.ndarray] | None = None,
) -> Any:
    """A graph of one weighted product, y = x @ weight, as the builder writes it."""
    writer = GraphWriter(int8, float_channels)
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
    onnx.save(one_product(weight), tmp_path / "float32.onnx")
    quantize_int8(tmp_path / "float32.onnx", tmp_path / "tensor.onnx")  # the decoding graph's
    weights = int8_weights(onnx.load(tmp_path / "tensor.onnx"))
    onnx.save(one_product(weight, weights), tmp_path / "rows.onnx")

    def errors(graph: Path) -> np.ndarray:
        session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {"x": x})
        error: np.ndarray = np.abs(y - exact).max(axis=1) / np.abs(exact).max(axis=1)
        return error

    assert (errors(tmp_path / "rows.onnx") < 0.02).all()
    # Live check: one range for the whole tensor, set by the huge token, loses the others.
    assert errors(tmp_path / "tensor.onnx")[1] > 0.1


@pytest.mark.parametrize("symmetric", [True, False])
def test_the_8_bit_weights_read_back_are_the_quantizers(tmp_path: Path, symmetric: bool) -> None:
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((64, 32)).astype(np.float32) + 0.5  # off-centre columns
    onnx.save(one_product(weight), tmp_path / "float32.onnx")
    quantize_int8(tmp_path / "float32.onnx", tmp_path / "int8.onnx", symmetric)

    (read,) = int8_weights(onnx.load(tmp_path / "int8.onnx")).values()

    assert read.values.dtype == np.uint8 and read.values.shape == weight.shape
    assert read.scale.shape == read.zero_point.shape == (weight.shape[1],)  # per output channel
    restored = (read.values.astype(np.float32) - read.zero_point) * read.scale
    assert np.abs(restored - weight).max() <= read.scale.max()  # within a step of each weight
    assert ((read.zero_point == 128).all()) == symmetric  # the check tells the two apart


def test_8_bit_weights_that_match_no_product_are_refused(store_dir: Path) -> None:
    import torch

    from textgen.models import load_decoder

    tiny = load_decoder(store_dir / "gpt2-test", torch.float32, torch.device("cpu"))
    stray = Int8Weight(np.zeros((2, 2), np.uint8), np.ones(2, np.float32), np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="no product of the graph: \\['not_a_weight'\\]"):
        build_graph(tiny, "gpt2", {"not_a_weight": stray})


def test_float_channels_are_taken_out_of_the_8_bit_product(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    weight = rng.standard_normal((64, 32)).astype(np.float32)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    outliers = np.array([3, 40], dtype=np.int64)
    x[:, outliers] *= 60  # two channels far above the rest in every token, as in a trained LLaMA
    only_outliers = np.zeros_like(x[:1])
    only_outliers[0, outliers] = x[0, outliers]
    x = np.concatenate([x, only_outliers])
    onnx.save(one_product(weight), tmp_path / "float32.onnx")
    quantize_int8(tmp_path / "float32.onnx", tmp_path / "tensor.onnx")
    weights = int8_weights(onnx.load(tmp_path / "tensor.onnx"))
    float32 = run_product(tmp_path / "float32.onnx", x)

    def error(channels: dict[str, np.ndarray] | None) -> np.ndarray:
        onnx.save(one_product(weight, weights, channels), tmp_path / "int8.onnx")
        y = run_product(tmp_path / "int8.onnx", x)
        difference: np.ndarray = np.abs(y - float32).max(axis=1) / np.abs(float32).max(axis=1)
        return difference

    taken, kept = error({"weight": outliers}), error(None)

    # A token with nothing but the taken channels is multiplied in float32 alone: the 8-bit
    # product adds exact zeros.
    assert taken[-1] < 1e-6 < kept[-1]
    # The other tokens' ranges are no longer set by the outliers (live: with them, 8 bits lose).
    assert (taken[:-1] < 0.02).all() and (kept[:-1] > 2 * taken[:-1]).all()


def run_product(graph: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    return np.asarray(y)


def test_calibration_finds_the_largest_channels_and_leaves_the_graph_as_it_was(
    store_dir: Path,
) -> None:
    import torch

    from textgen.convert.calibration import calibration_windows, float_channels, input_maxima
    from textgen.convert.onnx_graph import token_embedding
    from textgen.models import load_decoder

    tiny = load_decoder(store_dir / "llama-test", torch.float32, torch.device("cpu"))
    graph = build_graph(tiny, "llama")
    before = graph.SerializeToString()
    table = token_embedding(tiny, "llama")
    windows = calibration_windows(store_dir / "llama-test", tiny.context_length)

    first = float_channels(graph, table, windows, ("lm_head",), count=4)
    (largest,) = input_maxima(graph, table, windows, ("lm_head",)).values()

    assert windows and graph.SerializeToString() == before
    assert list(first) == ["lm_head"] and first["lm_head"].tolist() == sorted(
        np.argsort(largest)[-4:].tolist()
    )
    assert float_channels(graph, table, windows, ("lm_head",), count=4)["lm_head"].tolist() == (
        first["lm_head"].tolist()
    )


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_an_int8_table_gives_the_logits_of_its_rows_in_float32(
    store_dir: Path, tmp_path: Path, family: str
) -> None:
    """The int8 export's embedding lookup (8-bit rows times their scales) is exactly the float32
    graph's lookup in the table those rows stand for."""
    import torch

    from textgen.backends.onnx_runner import OnnxRunner
    from textgen.convert.onnx_graph import int8_rows, token_embedding
    from textgen.models import load_decoder

    tiny = load_decoder(store_dir / f"{family}-test", torch.float32, torch.device("cpu"))
    table = token_embedding(tiny, family)
    values, scales = int8_rows(table)
    restored = values.astype(np.float32) * scales
    assert values.dtype == np.int8 and scales.shape == (table.shape[0], 1)
    assert (np.abs(restored - table) <= scales * 0.5001).all()  # within half a step

    metadata = {"layers": len(tiny.blocks), "kv_heads": tiny.kv_heads, "head_dim": tiny.head_dim}
    metadata["vocab_size"] = tiny.vocab_size

    def logits(int8_table: bool, tables: dict[str, np.ndarray]) -> np.ndarray:
        path = tmp_path / f"{int8_table}.onnx"
        onnx.save(build_graph(tiny, family, int8_table=int8_table), path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        runner = OnnxRunner(session, metadata, 0, tables)
        (found,) = runner.add_rows([[5, 17, 3, 250, 9]], 5, all_logits=True)
        return found

    from_int8 = logits(True, {"embedding": values, "embedding_scale": scales})
    assert np.array_equal(from_int8, logits(False, {"embedding": restored}))
    # Live check: the table the rows were rounded from gives other logits.
    assert not np.array_equal(from_int8, logits(False, {"embedding": table}))
