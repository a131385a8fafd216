"""ONNX exports as earlier versions wrote them, made from a current one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def as_format_3(model: Path) -> Path:
    """Rewrite MODEL/onnx (an int8 export), in place, as format 3 wrote it: the weights inside
    the graph file, unsigned (NAME.u8, zero point 128), no int8_weights in the metadata."""
    import onnx
    from onnx import numpy_helper

    export = model / "onnx"
    graph = onnx.load(str(export / "model.onnx"))  # its external data read in
    renamed = {}
    for tensor in graph.graph.initializer:
        if tensor.name.endswith((".q8", ".zero_point")):
            unsigned = numpy_helper.to_array(tensor).view(np.uint8) ^ 0x80
            name = tensor.name.removesuffix(".q8") + ".u8" if tensor.name.endswith(".q8") else None
            renamed[tensor.name] = name or tensor.name
            tensor.CopyFrom(numpy_helper.from_array(unsigned, renamed[tensor.name]))
    for node in graph.graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    (export / "model.onnx.data").unlink()
    onnx.save(graph, export / "model.onnx")
    metadata = json.loads((export / "textgen.json").read_text())
    metadata.pop("int8_weights")
    (export / "textgen.json").write_text(json.dumps({**metadata, "format": 3}))
    return model
