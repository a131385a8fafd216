"""The export's 8-bit weights, computed a weight at a time, against ONNX Runtime's quantizer
itself: the same bytes, scales and zero points for every product of both families' graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.support.ort_quantizer import int8_weights, quantize_int8
from textgen.convert.channel_quantizer import graph_int8_weights, per_channel_uint8
from textgen.convert.onnx_graph import Int8Weight, build_graph
from textgen.models import load_decoder


def quantizers_weights(
    graph: onnx.ModelProto, folder: Path, symmetric: bool
) -> dict[str, Int8Weight]:
    onnx.save(graph, folder / "float32.onnx")
    quantize_int8(folder / "float32.onnx", folder / "int8.onnx", symmetric)
    return int8_weights(onnx.load(folder / "int8.onnx"))


def differences(ours: dict[str, Int8Weight], theirs: dict[str, Int8Weight]) -> list[str]:
    """Each weight and field where the two differ in value, type or shape."""
    assert ours.keys() == theirs.keys()
    return [
        f"{name}.{field}"
        for name in ours
        for field in ("values", "scale", "zero_point")
        if not _same(getattr(ours[name], field), getattr(theirs[name], field))
    ]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def awkward_weight() -> np.ndarray:
    """Channels that take each of the quantizer's branches: zeros, one sign only, subnormal
    and tiny ranges, and values exactly half a step apart (rounded half to even)."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 12)).astype(np.float32)
    weight[:, 1] = 0
    weight[:, 2] = np.abs(weight[:, 2]) + 3
    weight[:, 3] = -np.abs(weight[:, 3]) - 1
    weight[:, 4] *= np.float32(1e-30)
    weight[:, 5] *= np.float32(1e-39)
    weight[:, 6] = np.float32(1e-45)
    weight[:, 7] = np.float32(0.5) + np.arange(64, dtype=np.float32)  # halves of steps of 1
    weight[0, 7] = np.float32(127.5)  # symmetric scale 2 * 127.5 / 255 = 1
    weight[:, 8] = np.float32(0.25) + np.float32(0.5) * np.arange(64, dtype=np.float32)
    weight[0, 8] = np.float32(127.5)  # asymmetric scale 127.5 / 255 = 0.5: halves again
    return weight


@pytest.mark.parametrize("symmetric", [True, False])
def test_awkward_channels_come_out_as_the_quantizer_writes_them(
    tmp_path: Path, symmetric: bool
) -> None:
    from onnx import TensorProto, helper

    weight = awkward_weight()
    product = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "one_product",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", weight.shape[1]])],
        initializer=[onnx.numpy_helper.from_array(weight, "w")],
    )
    graph = helper.make_model(product, opset_imports=[helper.make_opsetid("", 17)])
    theirs = quantizers_weights(graph, tmp_path, symmetric)

    assert differences(graph_int8_weights(graph, symmetric), theirs) == []
    # Live check: rounding halves away from zero, as np.rint's neighbours might, differs.
    ours = per_channel_uint8(weight, symmetric)
    away = np.clip(np.floor(weight / ours.scale + 0.5) + ours.zero_point, 0, 255).astype(np.uint8)
    nudged = {"w": Int8Weight(away, ours.scale, ours.zero_point)}
    assert differences(nudged, theirs) == ["w.values"]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_every_product_of_a_graph_is_quantized_as_the_quantizer_does(
    store_dir: Path, tmp_path: Path, family: str
) -> None:
    tiny = load_decoder(store_dir / f"{family}-test", torch.float32, torch.device("cpu"))
    graph = build_graph(tiny, family)
    ours = graph_int8_weights(graph)

    assert differences(ours, quantizers_weights(graph, tmp_path, symmetric=True)) == []
    assert len(ours) == 4 * len(tiny.blocks) + 1  # each layer's four products and the output's
