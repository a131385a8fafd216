"""An int8 export's weights in the byte form that the CPU serving them multiplies exactly, fastest.

On a CPU with VNNI (AVX512-VNNI or AVX-VNNI), ONNX Runtime's U8S8 kernels (signed weights) are
exact (VPDPBUSD sums in 32 bits) and much faster than its U8U8 ones; without VNNI they saturate
(VPMADDUBSW sums pairs in 16 bits) and a model's text turns to garbage, while U8U8 is exact on
every CPU. So the choice is made here, by the CPU the process runs on, not by the one that
exported. The export stores them signed (textgen.convert.onnx_export; an export of format 3,
unsigned): where that is what the CPU wants, ONNX Runtime maps them from the file as they are.

The two forms are the same numbers: an unsigned weight v with zero point 128 is the signed weight
v - 128 with zero point 0, and v - 128 as a signed byte is v with its top bit flipped. Where the
other form is wanted, the graph's bytes are patched in memory without parsing the model into
objects (that would need the onnx package, which serving does without): the protobuf wire format
is walked down to the initializers (ModelProto.graph, GraphProto.initializer), each 8-bit weight's
and zero point's data_type changes between UINT8 and INT8 (one byte each) and its bytes get their
top bit flipped: where they lie in the graph, or, for those in the export's weights file
(textgen.convert.onnx_layout), in a copy handed to ONNX Runtime from memory with the rest of that
file's tensors (mapped, not copied). ONNX Runtime keeps using those buffers: the caller keeps them
as long as the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from textgen.backends.cpu import cpu_flags

Int8Weights = Literal["auto", "unsigned", "signed"]

# Field numbers of onnx.proto and its TensorProto.DataType values.
_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_TENSOR_DIMS, _TENSOR_DATA_TYPE, _TENSOR_NAME, _TENSOR_RAW_DATA = 1, 2, 8, 9
_TENSOR_EXTERNAL_DATA, _ENTRY_KEY, _ENTRY_VALUE = 13, 1, 2
_UINT8, _INT8 = 2, 3
_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 10: np.float16}
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5

# Beside each weight, the graph's integer products take NAME.q8 (NAME.u8 in format 3) and
# NAME.zero_point (see textgen.convert.onnx_writer.GraphWriter); the zero point of each form.
_WEIGHT_SUFFIXES, _ZERO_POINT_SUFFIX = (".q8", ".u8"), ".zero_point"
_ZERO_POINTS = {_UINT8: 128, _INT8: 0}
_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni"})


def wants_signed(choice: Int8Weights, flags: frozenset[str] | None = None) -> bool:
    """Whether to serve signed weights: asked for, or "auto" on a CPU with VNNI."""
    if choice != "auto":
        return choice == "signed"
    return bool(_VNNI_FLAGS & (cpu_flags() if flags is None else flags))


@dataclass
class FlippedGraph:
    """A graph with its 8-bit weights in the other form: its bytes, and the data of its external
    tensors by name (arrays ONNX Runtime reads in place: keep them as long as the session)."""

    model: bytes
    external: dict[str, np.ndarray] = field(default_factory=dict)


def flipped_graph(path: Path, signed: bool) -> FlippedGraph | None:
    """The graph at `path` with its 8-bit weights made signed (or unsigned); None when none
    is in the other form (a float32 graph too), or one cannot be flipped: unsigned with a zero
    point other than 128 (the graph is served as written)."""
    graph = bytearray(path.read_bytes())
    tensors = {t.name: t for t in _initializers(memoryview(graph))}
    pairs = [
        (tensor, tensors.get(name.removesuffix(suffix) + _ZERO_POINT_SUFFIX))
        for name, tensor in tensors.items()
        for suffix in _WEIGHT_SUFFIXES
        if name.endswith(suffix)
    ]
    stored, wanted = (_UINT8, _INT8) if signed else (_INT8, _UINT8)
    pairs = [pair for pair in pairs if pair[0].data_type == stored]
    if not pairs:
        return None
    external = _ExternalData(path.parent)
    for weight, zero_point in pairs:
        if zero_point is None or not all(t.byte_form(stored) for t in (weight, zero_point)):
            return None
        if not (zero_point.values(graph, external) == _ZERO_POINTS[stored]).all():
            return None
    flipped = {t.name for pair in pairs for t in pair if t is not None}
    arrays = {}
    for tensor in tensors.values():
        if tensor.name in flipped:
            graph[tensor.data_type_at] = wanted
        if tensor.location is not None:  # handed over from memory, flipped or not
            values = tensor.values(graph, external)
            arrays[tensor.name] = (
                (values.view(np.uint8) ^ 0x80).view(_DTYPES[wanted])
                if tensor.name in flipped
                else values
            )
        elif tensor.name in flipped:
            raw = np.frombuffer(
                graph, np.uint8, tensor.raw_stop - tensor.raw_start, tensor.raw_start
            )
            graph[tensor.raw_start : tensor.raw_stop] = (raw ^ 0x80).tobytes()
    return FlippedGraph(bytes(graph), arrays)


class _ExternalData:
    """The files of a graph's external tensors, mapped read-only as they are first asked for;
    only plain file names beside the graph (a name must not lead elsewhere)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._maps: dict[str, np.ndarray] = {}

    def read(self, location: str, offset: int, length: int) -> np.ndarray:
        if Path(location).name != location or location in ("", ".", ".."):
            raise ValueError(f"external data {location!r} is not a file beside the graph")
        if location not in self._maps:
            self._maps[location] = np.memmap(self._folder / location, np.uint8, mode="r")
        data = self._maps[location]
        if offset < 0 or length < 0 or offset + length > len(data):
            raise ValueError(f"external data {location!r} ends before byte {offset + length}")
        return data[offset : offset + length]


@dataclass
class _Tensor:
    """Where one initializer's name, type and raw bytes lie in the serialized model."""

    name: str = ""
    dims: list[int] = field(default_factory=list)
    data_type: int = 0
    data_type_at: int = -1
    data_type_width: int = 0
    raw_start: int = -1
    raw_stop: int = -1
    location: str | None = None  # external data: the file, offset and length
    offset: int = 0
    length: int = -1

    def byte_form(self, data_type: int) -> bool:
        """Whether the tensor is stored, as bytes of that type (its type one byte to patch)."""
        stored = self.raw_start >= 0 or self.location is not None
        return self.data_type == data_type and self.data_type_width == 1 and stored

    def values(self, graph: bytearray, external: _ExternalData) -> np.ndarray:
        """The tensor's values (a view of the graph's bytes or of its mapped file)."""
        dtype = np.dtype(_DTYPES.get(self.data_type, np.uint8))
        if self.location is not None:
            raw = external.read(self.location, self.offset, self.length)
        else:
            raw = np.frombuffer(graph, np.uint8, self.raw_stop - self.raw_start, self.raw_start)
        count = int(np.prod(self.dims, dtype=np.int64))
        if self.data_type not in _DTYPES or raw.nbytes != count * dtype.itemsize:
            raise ValueError(f"initializer {self.name!r} does not hold its {self.dims} values")
        return raw.view(dtype).reshape(self.dims)


def _initializers(buffer: memoryview) -> Iterator[_Tensor]:
    for number, _, start, stop in _fields(buffer, 0, len(buffer)):
        if number != _MODEL_GRAPH:
            continue
        for inner, _, tensor_start, tensor_stop in _fields(buffer, start, stop):
            if inner == _GRAPH_INITIALIZER:
                yield _tensor(buffer, tensor_start, tensor_stop)


def _tensor(buffer: memoryview, start: int, stop: int) -> _Tensor:
    tensor = _Tensor()
    for number, wire_type, value_start, value_stop in _fields(buffer, start, stop):
        if number == _TENSOR_DATA_TYPE and wire_type == _VARINT:
            tensor.data_type = _varint(buffer, value_start)[0]
            tensor.data_type_at, tensor.data_type_width = value_start, value_stop - value_start
        elif number == _TENSOR_NAME:
            tensor.name = bytes(buffer[value_start:value_stop]).decode("utf-8", "replace")
        elif number == _TENSOR_RAW_DATA:
            tensor.raw_start, tensor.raw_stop = value_start, value_stop
        elif number == _TENSOR_DIMS:
            tensor.dims.extend(_varints(buffer, value_start, value_stop, wire_type))
        elif number == _TENSOR_EXTERNAL_DATA:
            entry = {
                key: bytes(buffer[start:stop]).decode("utf-8", "replace")
                for key, _, start, stop in _fields(buffer, value_start, value_stop)
            }
            key, value = entry.get(_ENTRY_KEY), entry.get(_ENTRY_VALUE, "")
            if key == "location":
                tensor.location = value
            elif key in ("offset", "length"):
                setattr(tensor, key, int(value))
    return tensor


def _varints(buffer: memoryview, start: int, stop: int, wire_type: int) -> list[int]:
    """A repeated integer field's values: one varint, or a packed run of them."""
    if wire_type == _VARINT:
        return [_varint(buffer, start)[0]]
    values, position = [], start
    while position < stop:
        value, position = _varint(buffer, position)
        values.append(value)
    return values


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
