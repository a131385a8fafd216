"""`textgen export-onnx`: a model folder's decoding step as an ONNX graph, for the fast CPU path.

The graph is written node by node from the project's own decoder (textgen.models) with ONNX
Runtime's fused operators (textgen.convert.onnx_graph): the KV cache is updated in place, LLaMA's
grouped KV heads stay grouped, q/k/v and gate/up are fused, and logits are computed only at the
positions asked for (`logit_positions`): the last one while decoding, every one when scoring a
prompt. Weights are quantized to 8 bits with per-channel scales, or kept in float32.

An int8 export is one graph for prompts and decoding steps alike. Its 8-bit weights are the ones
ONNX Runtime's quantizer writes for the float32 graph, bit for bit, computed a weight at a time
rather than its channel at a time (textgen.convert.channel_quantizer);
its products are written here (textgen.convert.onnx_writer) so that every token's activations are
quantized over their own range. The quantizer's graph (DynamicQuantizeMatMul) takes one range for
the whole call: over a prompt, one token (the first, which LLaMA-family models turn into an
attention sink with huge activations) coarsened every other token, and SmolLM2's perplexity scored
through it rose by 4.4%; while decoding, a row's rounding depended on the rows decoding beside it,
so a prompt's greedy text changed with the batch it shared. Per token, a request's tokens are the
same whatever shares its batch, and one graph holds one copy of the weights. The token embedding
table is an input of the graph, saved once as embedding.npy: in an int8 export, in 8 bits per row
with each row's scale in embedding_scale.npy (a float32 table was 43-53% of the bytes a cold start
downloads; SmolLM2's held-out perplexity moves by less than the noise of its measurement).

Each weight channel is quantized symmetrically (zero at 128, the scale set by its largest
magnitude), not over its own min..max: the asymmetric zero point moves SmolLM2's held-out
perplexity by +2.8% of float32's, the symmetric one by +1.25%, at the same speed
(bench/quantization_choices.py). The output projection takes its few outsized input channels
out of the 8-bit product and multiplies them in float32 (textgen.convert.calibration, measured on
a calibration text shipped with the package).

The 8-bit weights are stored signed (v - 128, zero point 0: the quantizer's unsigned bytes with
their top bit flipped), the form CPUs with VNNI (AVX512-VNNI, AVX-VNNI) multiply exactly and
fastest (U8S8 kernels): there ONNX Runtime maps them from the file as they are. On x86 CPUs
without VNNI, ONNX Runtime multiplies u8 activations by s8 weights with VPMADDUBSW, whose 16-bit
sums saturate (SmolLM2's held-out perplexity went from 82 to 14,875: garbage text), so there the
loader flips them back to unsigned in memory (U8U8 kernels, exact everywhere):
textgen.backends.signed_int8. The export cannot know the CPU that will serve it. Serving needs
onnxruntime and numpy (textgen.backends.onnx_backend); torch is needed only here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from textgen.backends.tokenizer import TOKENIZER_FILE
from textgen.backends.tokenizer_parts import write_parts
from textgen.convert.calibration import (
    CALIBRATION_FILE,
    FLOAT_PRODUCTS,
    calibration_windows,
    float_channels,
)
from textgen.convert.channel_quantizer import graph_int8_weights
from textgen.convert.export_cache import cached_export, export_key
from textgen.convert.onnx_graph import build_graph, int8_rows, token_embedding
from textgen.convert.onnx_layout import save_for_serving
from textgen.errors import BackendNotInstalled, UnsupportedModel
from textgen.model_files import (
    CONFIG_FILE,
    ONNX_EMBEDDING_FILE,
    ONNX_EMBEDDING_SCALE_FILE,
    ONNX_EXPORT_DIR,
    ONNX_EXPORT_FORMAT,
    ONNX_METADATA_FILE,
    ONNX_MODEL_FILE,
)
from textgen.models import load_decoder
from textgen.staging import staged_folder

Precision = Literal["int8", "float32"]
# What the export is made with, beside the model and the converter's files (export_key_of).
EXPORT_PACKAGES = ("torch", "onnx", "onnxruntime", "numpy", "tokenizers")


def export_onnx(
    model_dir: Path, precision: Precision = "int8", float_products: tuple[str, ...] = FLOAT_PRODUCTS
) -> Path:
    """Write MODEL_DIR/onnx/ (graph, tokenizer, metadata) through a staging folder; in int8,
    `float_products` (weight names) take their outlier input channels in float32."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("model_type") not in ("gpt2", "llama"):
        raise UnsupportedModel(
            f"cannot export a {config.get('model_type')!r} model to ONNX: gpt2 or llama only"
        )
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise BackendNotInstalled(
            f"`textgen export-onnx` needs onnx and onnxruntime ({exc}), which the base install "
            "has; an installation made without torch cannot export"
        ) from exc
    decoder = load_decoder(model_dir, torch.float32, torch.device("cpu"))
    target = model_dir / ONNX_EXPORT_DIR
    signed = False
    int8_metadata: dict[str, Any] = {}
    with staged_folder(target) as staging:
        float32 = build_graph(decoder, config["model_type"])
        table = token_embedding(decoder, config["model_type"])
        if precision == "float32":
            save_for_serving(float32, staging / ONNX_MODEL_FILE)
        else:
            weights = graph_int8_weights(float32)
            signed = all(w.symmetric() for w in weights.values())
            if signed:  # see the module's note
                weights = {name: weight.signed() for name, weight in weights.items()}
            windows = calibration_windows(model_dir, decoder.context_length)
            channels = float_channels(float32, table, windows, float_products)
            per_token = build_graph(
                decoder, config["model_type"], weights, channels, int8_table=True
            )
            int8_metadata = {
                "calibration_tokens": sum(map(len, windows)),
                "float_channels": {name: len(taken) for name, taken in channels.items()},
            }
            save_for_serving(per_token, staging / ONNX_MODEL_FILE)
            table, scales = int8_rows(table)
            np.save(staging / ONNX_EMBEDDING_SCALE_FILE, scales)
            int8_metadata["embedding_scale"] = ONNX_EMBEDDING_SCALE_FILE
        np.save(staging / ONNX_EMBEDDING_FILE, table)
        tokenizer = model_dir / TOKENIZER_FILE
        tokenizer_source = write_parts(tokenizer, staging) if tokenizer.is_file() else None
        metadata = {
            "format": ONNX_EXPORT_FORMAT,
            "family": config["model_type"],
            "precision": precision,
            "layers": len(decoder.blocks),
            "kv_heads": decoder.kv_heads,
            "head_dim": decoder.head_dim,
            "vocab_size": decoder.vocab_size,
            "context_length": decoder.context_length,
            "embedding": ONNX_EMBEDDING_FILE,
        }
        if tokenizer_source:  # the tokenizer, in parts that load faster
            metadata["tokenizer_parts_of"] = tokenizer_source
        if precision == "int8":
            metadata["int8_weights"] = "signed" if signed else "unsigned"
            metadata.update(int8_metadata)
        (staging / ONNX_METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return target


def ensure_export(model_dir: Path, cache_dir: Path | None = None) -> Path | None:
    """Write MODEL_DIR's int8 export unless it has a current one or is no model the export
    knows (no config, or a family other than gpt2 and llama): the export written, or None. With
    `cache_dir` (EXPORT_CACHE_DIR), one of identical inputs made before is copied from there."""
    try:
        config = json.loads((Path(model_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if config.get("model_type") not in ("gpt2", "llama") or has_current_export(model_dir):
        return None
    key = "" if cache_dir is None else export_key_of(model_dir)
    target, _ = cached_export(
        cache_dir, Path(model_dir), ONNX_EXPORT_DIR, key, lambda: export_onnx(model_dir)
    )
    return target


def export_key_of(model_dir: Path) -> str:
    """The export cache's key of this model folder's int8 export (textgen.convert.export_cache):
    its files, the converter's (this folder's code and calibration text, the decoders it writes
    from, the tokenizer that reads the calibration text) and the libraries' versions."""
    package = Path(__file__).parents[1]
    converter = [
        *sorted(Path(__file__).parent.glob("*.py")),
        Path(__file__).parent / CALIBRATION_FILE,
        *sorted((package / "models").glob("*.py")),
        package / "model_files.py",
        package / "backends" / "tokenizer.py",
        package / "backends" / "tokenizer_parts.py",
    ]
    return export_key(Path(model_dir), converter, EXPORT_PACKAGES)


def has_current_export(model_dir: Path) -> bool:
    """Whether `model_dir` has an ONNX export of the format this version writes."""
    metadata = Path(model_dir) / ONNX_EXPORT_DIR / ONNX_METADATA_FILE
    try:
        return bool(
            json.loads(metadata.read_text(encoding="utf-8"))["format"] == ONNX_EXPORT_FORMAT
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False
