"""What the ONNX graphs are written with: a writer of nodes and initializers whose weighted
products are float32 or 8-bit, and the 8-bit weights ONNX Runtime's quantizer writes, read back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

MS_DOMAIN = "com.microsoft"
CONTRIB_OPS = {
    "GroupQueryAttention",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "FastGelu",
    "BiasGelu",
}

OPSET = 17
# An 8-bit weight's initializer is NAME.q8, beside NAME.zero_point (textgen.backends.signed_int8
# finds them by these names; an export of format 3 named them NAME.u8).
INT8_WEIGHT_SUFFIX = ".q8"


@dataclass(frozen=True)
class Int8Weight:
    """A weight in 8 bits, per output channel: weight ~ (values - zero_point) * scale."""

    values: np.ndarray  # uint8 [in, out] (int8 in the signed form)
    scale: np.ndarray  # float32 [out]
    zero_point: np.ndarray  # uint8 [out] (int8 in the signed form)

    def symmetric(self) -> bool:
        return self.values.dtype == np.uint8 and bool((self.zero_point == 128).all())

    def signed(self) -> Int8Weight:
        """The same numbers as signed bytes: v - 128 with zero point 0 (v with its top bit
        flipped), for a weight symmetric around 128."""
        if not self.symmetric():
            raise ValueError("only 8-bit weights symmetric around 128 have a signed form")
        return Int8Weight(
            (self.values ^ 0x80).view(np.int8), self.scale, np.zeros_like(self.zero_point, np.int8)
        )


class GraphWriter:
    """Nodes and initializers, with names made up as they come. Weighted products are written
    in float32, or, for the weights given in `int8` (textgen.convert.channel_quantizer), in
    8 bits with each token's activations quantized on their own (see `linear`), the input
    channels named in `float_channels` (by weight name) taken out and multiplied in float32."""

    def __init__(
        self,
        int8: Mapping[str, Int8Weight] | None = None,
        float_channels: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self._helper, self._numpy_helper = helper, numpy_helper
        self._float = TensorProto.FLOAT
        self.int8 = dict(int8 or {})
        self.float_channels = dict(float_channels or {})
        self.int8_used: set[str] = set()
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._constants: set[str] = set()
        self._count = 0

    def weight(self, name: str, tensor: torch.Tensor | np.ndarray) -> str:
        array = np.ascontiguousarray(as_numpy(tensor))
        self.initializers.append(self._numpy_helper.from_array(array, name))
        return name

    def node(
        self, op: str, inputs: list[str], outputs: int | list[str] = 1, **attributes: Any
    ) -> list[str]:
        """Add a node; its outputs' names, made up unless given."""
        self._count += 1
        names = (
            [f"{op}_{self._count}_{index}" for index in range(outputs)]
            if isinstance(outputs, int)
            else outputs
        )
        domain = MS_DOMAIN if op in CONTRIB_OPS else ""
        self.nodes.append(
            self._helper.make_node(
                op, inputs, names, name=f"{op}_{self._count}", domain=domain, **attributes
            )
        )
        return names

    def one(self, op: str, inputs: list[str], **attributes: Any) -> str:
        return self.node(op, inputs, **attributes)[0]

    def linear(
        self,
        x: str,
        name: str,
        weight: torch.Tensor | np.ndarray,
        bias: torch.Tensor | None,
        output: str | None = None,
    ) -> str:
        """x @ weight (weight as [in, out]), plus bias: a MatMul on an initializer (which the
        int8 quantizer turns into DynamicQuantizeMatMul), or with the weight's 8-bit form when
        one was given."""
        product = None if bias is not None else output
        if name in self.int8:
            self.int8_used.add(name)
            out = self._int8_product(x, name, weight, product)
        else:
            (out,) = self.node("MatMul", [x, self.weight(name, weight)], node_names(product))
        if bias is not None:
            (out,) = self.node("Add", [out, self.weight(f"{name}.bias", bias)], node_names(output))
        return out

    def _int8_product(
        self, x: str, name: str, weight: torch.Tensor | np.ndarray, output: str | None
    ) -> str:
        """x @ weight in 8 bits, but for the input channels in float_channels[name], which are
        zeroed before quantizing (so they set no token's range and, as exact zeros, add nothing
        to the integer product) and multiplied in float32 beside it."""
        channels = self.float_channels.get(name)
        if channels is None or not len(channels):
            return self._int8_rows_matmul(x, name, self.int8[name], output)
        keep = np.ones(weight.shape[0], dtype=np.float32)
        keep[channels] = 0.0
        rest = self.one("Mul", [x, self.weight(f"{name}.int8_channels", keep)])
        quantized = self._int8_rows_matmul(rest, name, self.int8[name], None)
        taken = self.one("Gather", [x, self.weight(f"{name}.float_channels", channels)], axis=-1)
        rows = np.ascontiguousarray(as_numpy(weight)[channels])
        in_float = self.one("MatMul", [taken, self.weight(f"{name}.float_rows", rows)])
        (out,) = self.node("Add", [quantized, in_float], node_names(output))
        return out

    def _int8_rows_matmul(self, x: str, name: str, weight: Int8Weight, output: str | None) -> str:
        """x @ weight in 8 bits, every token's activations quantized over their own min..max:
        a token's result never depends on the other tokens of the call (ONNX Runtime's
        DynamicQuantizeMatMul takes one range for the whole tensor, so a prompt's largest
        activation coarsened every other token, and a decoding row's rounding depended on the
        rows beside it). With s = (max - min) / 255 and n = round(min / s), a token goes in as
        q = saturate(round(x / s - n)), 0..255, and x ~ (q + n) * s: MatMulInteger takes one
        zero point for all of A, so n comes back after the integer product, exactly:
        sum((q + n) * w) = sum(q * w) + n * sum(w)."""
        centred = weight.values.astype(np.int32) - weight.zero_point.astype(np.int32)
        column_sums = centred.sum(axis=0).astype(np.float32)
        high = self.one("ReduceMax", [x], axes=[-1], keepdims=1)
        low = self.one("ReduceMin", [x], axes=[-1], keepdims=1)
        spread = self.one("Sub", [high, low])
        steps = self.one("Mul", [spread, self._shared("inverse_255", 1 / 255)])
        row_scale = self.one("Max", [steps, self._shared("smallest_scale", 1e-12)])
        low_steps = self.one("Round", [self.one("Div", [low, row_scale])])
        shifted = self.one("Sub", [self.one("Div", [x, row_scale]), low_steps])
        quantized = self.one(  # round half to even and saturate to 0..255, as Round and Clip would
            "QuantizeLinear",
            [shifted, self._shared("float_1", 1.0), self._shared("uint8_0", np.uint8(0))],
        )
        products = self.one(
            "MatMulInteger",
            [
                quantized,
                self.weight(f"{name}{INT8_WEIGHT_SUFFIX}", weight.values),
                "",
                self.weight(f"{name}.zero_point", weight.zero_point),
            ],
        )
        correction = self.one("Mul", [low_steps, self.weight(f"{name}.column_sums", column_sums)])
        exact = self.one("Add", [self.one("Cast", [products], to=self._float), correction])
        rows_scaled = self.one("Mul", [exact, row_scale])
        channel_scale = self.weight(f"{name}.scale", weight.scale)
        (out,) = self.node("Mul", [rows_scaled, channel_scale], node_names(output))
        return out

    def _shared(self, name: str, value: float | np.generic) -> str:
        """A constant initializer used by many nodes, added once (a Python float as float32)."""
        if name not in self._constants:
            self._constants.add(name)
            dtype = np.float32 if isinstance(value, float) else None
            self.weight(name, np.asarray(value, dtype=dtype))
        return name


def node_names(output: str | None) -> list[str] | int:
    """A node's outputs: the one name given, or one name to be made up."""
    return [output] if output else 1


def as_numpy(tensor: torch.Tensor | np.ndarray) -> np.ndarray:
    return tensor.detach().float().numpy() if isinstance(tensor, torch.Tensor) else tensor


def ints(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)
