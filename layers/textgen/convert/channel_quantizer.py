"""A float32 graph's weighted products in 8 bits per output channel, byte for byte what ONNX
Runtime's dynamic quantizer writes (`quantize_dynamic`, unsigned weights, `per_channel`), computed
for all channels of a weight at once.

The quantizer computes each channel's range, scale and bytes in a Python loop of its own, a few
numpy calls per channel, and needs the graph saved and read back (SmolLM2-135M has 204,672
channels: the demo store, which exports it, built in 69.9 s on two cores through the quantizer and
in 45.1 s this way, bench/build_cost.py). Here a weight is a few array operations. The
arithmetic is the quantizer's, step for step (ranges widened to hold zero, the scale worked out in
float64 and stored in float32, values divided by it in float32 and rounded half to even), and the
suite checks the bytes against the quantizer's own (tests/unit/test_channel_quantizer.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from textgen.convert.onnx_writer import Int8Weight

_QMIN, _QMAX = 0, 255  # unsigned bytes, the full range (the quantizer's, without reduce_range)
_ZERO_SYMMETRIC = 128  # round((0 + 255) / 2), half to even


def per_channel_uint8(weight: np.ndarray, symmetric: bool = True) -> Int8Weight:
    """`weight` (float32 [in, out]) in unsigned bytes with a scale and a zero point per output
    channel; `symmetric` centres every channel's range on zero (zero point 128)."""
    weight = np.asarray(weight, dtype=np.float32)
    low = np.minimum(weight.min(axis=0), np.float32(0))
    high = np.maximum(weight.max(axis=0), np.float32(0))
    if symmetric:
        high = np.maximum(np.abs(low), np.abs(high))
        low = -high
    scale64 = (high.astype(np.float64) - low.astype(np.float64)) / (_QMAX - _QMIN)
    # A channel of zeros (a scale under float32's smallest normal) gets scale 1 and zero point 0.
    flat = scale64 < np.finfo(np.float32).tiny
    if symmetric:
        zero_point = np.full(weight.shape[1], _ZERO_SYMMETRIC, dtype=np.uint8)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            zero_point = np.round(_QMIN - low / scale64).astype(np.uint8)
    zero_point[flat] = 0
    scale = np.where(flat, np.float32(1), scale64.astype(np.float32))
    values = np.round(weight / scale) + zero_point
    np.clip(values, _QMIN, _QMAX, out=values)
    return Int8Weight(values.astype(np.uint8), scale, zero_point)


def graph_int8_weights(graph: Any, symmetric: bool = True) -> dict[str, Int8Weight]:
    """By weight name, every MatMul weight (an initializer) of `graph` (a float32 ModelProto)
    in 8 bits per output channel: what the quantizer writes for the same graph, read back
    (tests/support/ort_quantizer.py)."""
    from onnx import TensorProto, numpy_helper

    matrices = {
        t.name: t
        for t in graph.graph.initializer
        if t.data_type == TensorProto.FLOAT and len(t.dims) == 2
    }
    names = {
        node.input[1]
        for node in graph.graph.node
        if node.op_type == "MatMul" and node.input[1] in matrices
    }
    return {
        name: per_channel_uint8(numpy_helper.to_array(matrices[name]), symmetric)
        for name in sorted(names)
    }


__all__ = ["graph_int8_weights", "per_channel_uint8"]
