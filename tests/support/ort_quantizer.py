"""ONNX Runtime's own dynamic quantizer, the reference the export's 8-bit weights are checked
against (textgen.convert.channel_quantizer computes the same bytes a weight at a time), and its
output's weights read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textgen.convert.onnx_writer import Int8Weight


def quantize_int8(
    float32_graph: Path,
    output: Path,
    symmetric: bool = True,
    keep_float32: tuple[str, ...] = (),
) -> Path:
    """The graph's weighted MatMuls in 8 bits, unsigned, per channel (the export signs them);
    the nodes named in keep_float32 stay as they are."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        float32_graph,
        output,
        weight_type=QuantType.QUInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=list(keep_float32),
        # Shape inference cannot see through ONNX Runtime's own operators: say what flows.
        extra_options={"WeightSymmetric": symmetric, "DefaultTensorType": TensorProto.FLOAT},
    )
    return output


def int8_weights(graph: Any) -> dict[str, Int8Weight]:
    """The 8-bit weights ONNX Runtime's quantizer wrote into `graph` (a ModelProto), by the name
    of the float32 weight each replaced: it writes NAME_quantized, NAME_scale, NAME_zero_point."""
    from onnx import numpy_helper

    arrays = {t.name: t for t in graph.graph.initializer}
    found = {}
    for name in arrays:
        if name.endswith("_quantized"):
            base = name.removesuffix("_quantized")
            values, scale, zero_point = (
                numpy_helper.to_array(arrays[f"{base}{suffix}"])
                for suffix in ("_quantized", "_scale", "_zero_point")
            )
            found[base] = Int8Weight(values, scale, zero_point)
    return found
