"""ONNX Runtime backend: the graph `textgen export-onnx` wrote (int8 weights by default), under the
step engine. No torch at serving time: onnxruntime, numpy and the model's tokenizer.

The KV cache is the runner's own memory, written in place by the graph (see OnnxRunner). Prompts
and decoding steps run through one graph, whose int8 products quantize each token on its own (see
textgen.convert.onnx_export): a request's tokens do not depend on what shares its batch. It takes
the token embedding table as an input, mapped from the export's embedding.npy (pages are read as
tokens use them; an int8 export's table is 8-bit, its rows' scales in embedding_scale.npy). Its
8-bit weights are served signed on CPUs where that is exact and faster
(textgen.backends.signed_int8).

The export's graph comes optimized, its weights in a file ONNX Runtime memory-maps
(textgen.convert.onnx_layout): a session starts without optimizing or copying them. An export of
the previous format (weights inside the graph) is optimized here; if it was an int8 export in two
graphs, its per-token prompt graph (prefill.onnx) serves both, its decoding graph is not loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from textgen.backends.cpu import available_cpus
from textgen.backends.onnx_runner import OnnxRunner
from textgen.backends.signed_int8 import FlippedGraph, flipped_graph, wants_signed
from textgen.backends.step_backend import StepBackend
from textgen.backends.tokenizer import TOKENIZER_FILE, ModelTokenizer
from textgen.backends.tokenizer_parts import parts_for
from textgen.errors import ModelLoadFailed
from textgen.model_files import (
    ONNX_EMBEDDING_FILE,
    ONNX_EMBEDDING_INPUT,
    ONNX_EMBEDDING_SCALE_FILE,
    ONNX_EMBEDDING_SCALE_INPUT,
    ONNX_EXPORT_DIR,
    ONNX_METADATA_FILE,
    ONNX_MODEL_FILE,
    ONNX_OPTIMIZED_FORMATS,
    ONNX_PREFILL_FILE,
    ONNX_READABLE_FORMATS,
)
from textgen.settings import Settings

# What a damaged export raises: ours, and ONNX Runtime's (which share no base of their own).
_ORT_STATE = ort.capi.onnxruntime_pybind11_state
_ORT_ERRORS = (
    "Fail",
    "InvalidArgument",
    "NoSuchFile",
    "NoModel",
    "InvalidProtobuf",
    "InvalidGraph",
)
_LOAD_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    ValueError,
    KeyError,
    *(getattr(_ORT_STATE, name) for name in _ORT_ERRORS if hasattr(_ORT_STATE, name)),
)


def load_backend(model_dir: Path, settings: Settings) -> StepBackend:
    export = model_dir / ONNX_EXPORT_DIR
    try:
        metadata = json.loads((export / ONNX_METADATA_FILE).read_text(encoding="utf-8"))
        if metadata.get("format") not in ONNX_READABLE_FORMATS:
            raise ValueError(
                f"export format {metadata.get('format')!r}; this service reads "
                + " and ".join(map(str, ONNX_READABLE_FORMATS))
            )
        session, flipped, signed = _session(export, metadata, settings)
        tables = embedding_tables(export, metadata)
    except _LOAD_ERRORS as exc:
        raise ModelLoadFailed(
            f"the ONNX export of '{model_dir.name}' cannot be loaded: {exc}; re-create it with "
            "`textgen export-onnx`"
        ) from exc
    # After the session, not beside it on a thread: the tokenizer's parse holds the GIL and
    # the session's creation needs it often enough that side by side they took as long as one
    # after the other (docs/performance.md).
    tokens = load_tokenizer(model_dir, export, metadata)
    # Weights handed over from memory live as long as the runner (and its session).
    runner = OnnxRunner(session, metadata, tokens.pad_id, tables, keep=flipped)
    precision = metadata.get("precision", "float32")
    return StepBackend(
        model_dir.name,
        tokens,
        runner,
        int(metadata["context_length"]),
        runner.kv_bytes_per_token,
        settings,
        runtime=f"onnxruntime-{precision}{'-signed' if signed else ''}",
    )


def load_tokenizer(model_dir: Path, export: Path, metadata: dict[str, Any]) -> ModelTokenizer:
    """The model's tokenizer, from the parts the export wrote where they still match it."""
    parts = parts_for(model_dir / TOKENIZER_FILE, export, metadata.get("tokenizer_parts_of"))
    return ModelTokenizer(model_dir, parts)


def _session(
    export: Path, metadata: dict[str, Any], settings: Settings
) -> tuple[ort.InferenceSession, FlippedGraph | None, bool]:
    """The export's graph in a session, its int8 weights in the form this CPU wants (and the
    flipped copy they were handed over from, if any: it must outlive the session)."""
    graph = metadata.get("prefill_model", ONNX_MODEL_FILE)  # an older export's prefill.onnx
    if graph not in (ONNX_MODEL_FILE, ONNX_PREFILL_FILE):
        raise ValueError(f"unexpected prefill graph {graph!r}")
    flipped, signed = _int8_weights_for_this_cpu(export / graph, metadata, settings)
    options = session_options(settings)
    if metadata["format"] in ONNX_OPTIMIZED_FORMATS:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if flipped and flipped.external:
        options.add_external_initializers(
            list(flipped.external),
            [ort.OrtValue.ortvalue_from_numpy(a) for a in flipped.external.values()],
        )
    session = ort.InferenceSession(
        flipped.model if flipped else str(export / graph),
        options,
        providers=["CPUExecutionProvider"],
    )
    return session, flipped, signed


def _int8_weights_for_this_cpu(
    graph: Path, metadata: dict[str, Any], settings: Settings
) -> tuple[FlippedGraph | None, bool]:
    """An int8 graph's weights in the form this CPU wants, flipped in memory where they are
    stored in the other (a float32 graph is not read through), and whether they are served
    signed."""
    if metadata.get("precision") != "int8":
        return None, False
    wanted = wants_signed(settings.onnx_int8_weights)
    stored = metadata.get("int8_weights") == "signed"  # format 3: unsigned
    flipped = flipped_graph(graph, wanted) if wanted != stored else None
    return flipped, wanted if flipped else stored


def embedding_tables(export: Path, metadata: dict[str, Any]) -> dict[str, np.ndarray]:
    """The export's token embedding table, memory-mapped and read-only, by the graph's input
    name: float32, or (an int8 export since format 6) int8 with its rows' scales beside it."""
    if metadata.get("embedding") != ONNX_EMBEDDING_FILE:
        raise ValueError(f"unexpected embedding file {metadata.get('embedding')!r}")
    scaled = "embedding_scale" in metadata
    if scaled and metadata["embedding_scale"] != ONNX_EMBEDDING_SCALE_FILE:
        raise ValueError(f"unexpected embedding scale file {metadata['embedding_scale']!r}")
    vocab = int(metadata["vocab_size"])
    tables = {ONNX_EMBEDDING_INPUT: _table(export, ONNX_EMBEDDING_FILE, vocab, scaled)}
    if scaled:
        scales = _table(export, ONNX_EMBEDDING_SCALE_FILE, vocab, False)
        if scales.shape[1] != 1:
            raise ValueError(f"{ONNX_EMBEDDING_SCALE_FILE} is not one scale per row")
        tables[ONNX_EMBEDDING_SCALE_INPUT] = scales
    return tables


def _table(export: Path, name: str, rows: int, int8: bool) -> np.ndarray:
    table: np.ndarray = np.load(export / name, mmap_mode="r")
    kind = np.int8 if int8 else np.float32
    if table.dtype != kind or table.ndim != 2 or not table.flags.c_contiguous:
        raise ValueError(f"{name} is not a 2-D {np.dtype(kind).name} table")
    if table.shape[0] != rows:
        raise ValueError(f"{name} has {table.shape[0]} rows for {rows} tokens")
    return table


def session_options(settings: Settings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.torch_threads or available_cpus()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # A step hands its threads hundreds of small pieces of work: a short spin catches the next
    # one without a trip through the kernel. Spinning long, or between steps (ONNX Runtime's
    # default), is ruinous beside busy neighbours: a spinner burns the time slice of the thread
    # it waits for. bench/spin_wait.py measures both sides.
    spin = settings.onnx_spin_wait_us
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin:
        options.add_session_config_entry("session.intra_op.spin_duration_us", str(spin))
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options
