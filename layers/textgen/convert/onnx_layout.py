"""An export's graph laid out for a fast start: what ONNX Runtime can do ahead of time is done here.

- The graph is optimized once, at export, by ONNX Runtime itself (its EXTENDED level: the
  fusions of the CPU execution provider, none of them tied to a CPU's instructions), and served
  without optimizing again (textgen.backends.onnx_backend).
- Every initializer of LARGE_INITIALIZER_BYTES or more lies in one file beside the graph
  (WEIGHTS_FILE), each at an offset aligned to WEIGHTS_ALIGNMENT: ONNX Runtime memory-maps
  aligned external data instead of parsing it out of the graph and copying it (64 KiB is
  Windows' mapping granularity, a multiple of every page size), and the graph itself is a small
  file read in milliseconds.

Weights are not stored prepacked: the layout ONNX Runtime's integer kernels pack them into
depends on the CPU's instructions, which the export cannot know.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from textgen.model_files import ONNX_WEIGHTS_FILE

LARGE_INITIALIZER_BYTES = 64 * 1024
WEIGHTS_ALIGNMENT = 64 * 1024
_TWO_GIB = 2**31 - 1


def save_for_serving(graph: Any, path: Path) -> None:
    """Write `graph` (a ModelProto) to `path`, optimized, its large initializers in
    path.parent / ONNX_WEIGHTS_FILE."""
    import onnx

    with tempfile.TemporaryDirectory() as scratch:
        written, optimized = Path(scratch) / "written.onnx", Path(scratch) / "optimized.onnx"
        save_graph(graph, written)
        optimize_graph(written, optimized)
        model = onnx.load(str(optimized))  # its external data read back in
    with open(path.parent / ONNX_WEIGHTS_FILE, "wb") as weights:
        _move_large_initializers(model, weights)
    onnx.save_model(model, path)


def save_graph(graph: Any, path: Path) -> None:
    """`graph` as one file, or with external data where protobuf's 2 GiB limit says so."""
    import onnx

    big = graph.ByteSize() > _TWO_GIB
    onnx.save_model(graph, path, save_as_external_data=big, location=f"{path.name}.data")


def optimize_graph(source: Path, target: Path) -> None:
    """The graph at `source` as ONNX Runtime's EXTENDED level optimizes it for its CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    # Large graphs come out with external data (protobuf's 2 GiB); read back by onnx.load.
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", f"{target.name}.data"
    )
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes",
        str(LARGE_INITIALIZER_BYTES),
    )
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def _move_large_initializers(model: Any, weights: Any) -> None:
    """Each initializer of LARGE_INITIALIZER_BYTES or more written to `weights` (an open file) at
    an aligned offset, the graph pointing there."""
    from onnx import TensorProto

    for tensor in model.graph.initializer:
        if len(tensor.raw_data) < LARGE_INITIALIZER_BYTES:
            continue
        offset = weights.tell()
        padding = -offset % WEIGHTS_ALIGNMENT
        weights.write(b"\0" * padding)
        weights.write(tensor.raw_data)
        entries = {
            "location": ONNX_WEIGHTS_FILE,
            "offset": str(offset + padding),
            "length": str(len(tensor.raw_data)),
        }
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key, value in entries.items():
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
