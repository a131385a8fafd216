"""An int8 export's weights as signed bytes, made at load for the CPU that serves them.

The export writes its 8-bit weights unsigned, zero point 128 (textgen.convert.onnx_export): ONNX
Runtime's U8U8 kernels are exact on every x86 CPU. On a CPU with VNNI (AVX512-VNNI or AVX-VNNI),
its U8S8 kernels are exact too (VPDPBUSD sums in 32 bits) and much faster; without VNNI they
saturate (VPMADDUBSW sums pairs in 16 bits) and a model's text turns to garbage. So the choice is
made here, by the CPU the process runs on, not by the one that exported.

The signed form is the same numbers: an unsigned weight v with zero point 128 is the signed
weight v - 128 with zero point 0, and v - 128 as a signed byte is v with its top bit flipped. So
the graph's bytes are patched where they lie, without parsing the model into objects (that would
need the onnx package, which serving does without): the protobuf wire format is walked down to the
8-bit initializers (ModelProto.graph, GraphProto.initializer), each weight's and zero point's
raw bytes get their top bit flipped and their data_type goes from UINT8 to INT8 (one byte each).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from textgen.backends.cpu import cpu_flags

Int8Weights = Literal["auto", "unsigned", "signed"]

# Field numbers of onnx.proto and its TensorProto.DataType values.
_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_TENSOR_DATA_TYPE, _TENSOR_NAME, _TENSOR_RAW_DATA = 2, 8, 9
_UINT8, _INT8 = 2, 3
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5

# Beside each weight, the graph's integer products take NAME.u8 and NAME.zero_point (see
# textgen.convert.onnx_writer.GraphWriter).
_WEIGHT_SUFFIX, _ZERO_POINT_SUFFIX = ".u8", ".zero_point"
_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni"})


def wants_signed(choice: Int8Weights, flags: frozenset[str] | None = None) -> bool:
    """Whether to serve signed weights: asked for, or "auto" on a CPU with VNNI."""
    if choice != "auto":
        return choice == "signed"
    return bool(_VNNI_FLAGS & (cpu_flags() if flags is None else flags))


@contextmanager
def signed_graph(path: Path) -> Iterator[Path | None]:
    """A temporary copy of the graph at `path` with its 8-bit weights signed, removed when the
    block ends (ONNX Runtime has read it by then); None when it has none to sign (a float32
    graph, weights kept outside the graph file) or any is not symmetric around 128 (then it is
    served as written). The copy is patched through a memory map, unmapped before ONNX Runtime
    reads it: the process never holds the graph twice (handing ONNX Runtime the patched bytes
    instead raised SmolLM2's peak memory at load from 0.26 to 0.48 GB)."""
    with tempfile.TemporaryDirectory(prefix="textgen-signed-") as scratch:
        copy = Path(scratch) / path.name
        shutil.copyfile(path, copy)
        data = np.memmap(copy, dtype=np.uint8, mode="r+")
        try:
            signed = _sign_in_place(data)
            data.flush()
        finally:
            del data
        yield copy if signed else None


def _sign_in_place(data: np.ndarray) -> bool:
    tensors = {t.name: t for t in _initializers(data.data)}
    pairs = [
        (tensor, tensors.get(name.removesuffix(_WEIGHT_SUFFIX) + _ZERO_POINT_SUFFIX))
        for name, tensor in tensors.items()
        if name.endswith(_WEIGHT_SUFFIX)
    ]
    if not pairs:
        return False
    for weight, zero_point in pairs:
        if zero_point is None or not all(t.unsigned_bytes() for t in (weight, zero_point)):
            return False
        if not (data[zero_point.raw_start : zero_point.raw_stop] == 128).all():
            return False
    for tensor in (t for pair in pairs for t in pair if t is not None):
        data[tensor.raw_start : tensor.raw_stop] ^= 0x80
        data[tensor.data_type_at] = _INT8
    return True


@dataclass
class _Tensor:
    """Where one initializer's name, type and raw bytes lie in the serialized model."""

    name: str = ""
    data_type: int = 0
    data_type_at: int = -1
    data_type_width: int = 0
    raw_start: int = -1
    raw_stop: int = -1

    def unsigned_bytes(self) -> bool:
        return self.data_type == _UINT8 and self.data_type_width == 1 and self.raw_start >= 0


def _initializers(buffer: memoryview) -> Iterator[_Tensor]:
    for field, _, start, stop in _fields(buffer, 0, len(buffer)):
        if field != _MODEL_GRAPH:
            continue
        for inner, _, tensor_start, tensor_stop in _fields(buffer, start, stop):
            if inner == _GRAPH_INITIALIZER:
                yield _tensor(buffer, tensor_start, tensor_stop)


def _tensor(buffer: memoryview, start: int, stop: int) -> _Tensor:
    tensor = _Tensor()
    for field, wire_type, value_start, value_stop in _fields(buffer, start, stop):
        if field == _TENSOR_DATA_TYPE and wire_type == _VARINT:
            tensor.data_type = _varint(buffer, value_start)[0]
            tensor.data_type_at, tensor.data_type_width = value_start, value_stop - value_start
        elif field == _TENSOR_NAME:
            tensor.name = bytes(buffer[value_start:value_stop]).decode("utf-8", "replace")
        elif field == _TENSOR_RAW_DATA:
            tensor.raw_start, tensor.raw_stop = value_start, value_stop
    return tensor


def _fields(buffer: memoryview, start: int, stop: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value stop) of each field in buffer[start:stop];
    a length-delimited value's span is its payload."""
    position = start
    while position < stop:
        key, position = _varint(buffer, position)
        field, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            _, end = _varint(buffer, position)
            yield field, wire_type, position, end
        elif wire_type == _LENGTH:
            length, position = _varint(buffer, position)
            end = position + length
            yield field, wire_type, position, end
        elif wire_type in (_FIXED64, _FIXED32):
            end = position + (8 if wire_type == _FIXED64 else 4)
        else:
            raise ValueError(f"unexpected protobuf wire type {wire_type} at byte {position}")
        if end > stop:
            raise ValueError(f"a protobuf field runs past its message at byte {position}")
        position = end


def _varint(buffer: memoryview, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(buffer):
            raise ValueError("the model file ends inside a protobuf field")
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise ValueError(f"a protobuf varint longer than ten bytes at byte {position}")
