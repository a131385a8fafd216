"""Which input channels of the int8 export's products stay in float32.

The export quantizes each token's activations over that token's own range
(textgen.convert.onnx_writer). In a trained LLaMA a few hidden channels carry values tens of times
larger than the rest, so they set every token's range and leave the other channels a few steps
each. As QUIK does (Ashkboos et al., 2023, arXiv:2310.09259), the FLOAT_CHANNELS input channels
with the largest magnitudes are taken out before quantizing and multiplied in float32 beside the
8-bit product: the rest keep 8 bits over a range they set themselves, and the graph only comes
closer to the float32 one (the 8-bit weights are ONNX Runtime's quantizer's, unchanged).

Only the output projection (FLOAT_PRODUCTS) is written so by default: each such product costs
four nodes a step, and a node costs ONNX Runtime about 2.5 microseconds whatever its size. On
SmolLM2-135M (bench/float_channels.py) the output projection alone takes the KL divergence of the
next-token distributions from float32's from 0.0231 to 0.0192 nats per token at no measurable
cost; the 61 norm-fed products, 0.0103 at 0.92x the single-stream speed; all 121, 0.0071 at 0.77x.

The channels are found once, at export, on calibration.txt (the State of the Union address of
1962, a public-domain work of the United States government; not the held-out Moby-Dick text the
export is judged on), each window's first token left out: it is the attention sink, whose huge
activations are quantized over a range of its own anyway.
"""

from __future__ import annotations

import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from textgen.backends.tokenizer import ModelTokenizer
from textgen.model_files import ONNX_EMBEDDING_INPUT

FLOAT_PRODUCTS = ("lm_head",)  # by weight name
FLOAT_CHANNELS = 16  # of SmolLM2's 576 hidden channels
CALIBRATION_FILE = "calibration.txt"
CALIBRATION_WINDOW = 512  # tokens a prompt
CALIBRATION_WINDOWS = 8  # at most: 4,096 tokens (SmolLM2: the same channels as 7,680)


def calibration_windows(model_dir: Path, context_length: int) -> list[list[int]]:
    """The calibration text in the model's tokens, cut into whole windows the model can take."""
    text = files("textgen.convert").joinpath(CALIBRATION_FILE).read_text(encoding="utf-8")
    (ids,) = ModelTokenizer(model_dir).encode([text], special_tokens=False)
    size = min(CALIBRATION_WINDOW, context_length)
    windows = [ids[i : i + size] for i in range(0, len(ids) - size + 1, size)]
    return windows[:CALIBRATION_WINDOWS]


def float_channels(
    graph: Any,
    embedding: np.ndarray,
    windows: list[list[int]],
    products: tuple[str, ...] = FLOAT_PRODUCTS,
    count: int = FLOAT_CHANNELS,
) -> dict[str, np.ndarray]:
    """By weight name, for each of `products` (weight names) of `graph` (a float32 step), the
    `count` input channels (sorted int64 indices) with the largest magnitudes over `windows`."""
    chosen = {}
    for name, largest in input_maxima(graph, embedding, windows, products).items():
        count_here = min(count, largest.size)
        top = np.argpartition(largest, largest.size - count_here)[largest.size - count_here :]
        chosen[name] = np.sort(top).astype(np.int64)
    return chosen


def input_maxima(
    graph: Any, embedding: np.ndarray, windows: list[list[int]], products: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """By weight name, each input channel's largest magnitude over `windows` (first tokens left
    out) at each of `products` in `graph` (a float32 step's ModelProto, left unchanged)."""
    import onnx
    import onnxruntime as ort

    weights = {tensor.name for tensor in graph.graph.initializer}
    # The output projection takes the positions asked for (GatherND): its input is tapped before
    # that, so every position is measured while the projection runs for the last one only.
    gathered = {
        node.output[0]: node.input[0] for node in graph.graph.node if node.op_type == "GatherND"
    }
    taps = {
        node.input[1]: gathered.get(node.input[0], node.input[0])
        for node in graph.graph.node
        if node.op_type == "MatMul" and node.input[1] in weights and node.input[1] in products
    }
    if not taps or not windows:
        return {}
    tapped = sorted(set(taps.values()))
    tapping = onnx.ModelProto()
    tapping.CopyFrom(graph)  # saving with external data rewrites the initializers it saves
    tapping.graph.output.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in tapped
    )
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "calibration.onnx"
        onnx.save_model(tapping, path, save_as_external_data=True, location="weights")
        del tapping
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    takes = {value.name: value for value in graph.graph.input}
    maxima: dict[str, np.ndarray] = {}
    for window in windows:
        feeds = prompt_feeds(takes, window)
        feeds[ONNX_EMBEDDING_INPUT] = embedding
        for name, values in zip(tapped, session.run(tapped, feeds), strict=True):
            largest = np.abs(values.reshape(-1, values.shape[-1])[1:]).max(axis=0)
            maxima[name] = np.maximum(maxima[name], largest) if name in maxima else largest
    return {weight: maxima[name] for weight, name in taps.items()}


def prompt_feeds(
    takes: dict[str, Any], window: list[int], every_position: bool = False
) -> dict[str, np.ndarray]:
    """One row's prompt into empty caches of its length, the last position's logits asked for
    (or every position's)."""
    length = len(window)
    wanted = np.arange(length) if every_position else np.array([length - 1])
    feeds: dict[str, np.ndarray] = {
        "input_ids": np.array([window], dtype=np.int64),
        "seqlens_k": np.array([length - 1], dtype=np.int32),
        "total_sequence_length": np.array(length, dtype=np.int32),
        "logit_positions": wanted.astype(np.int64)[None],
    }
    if "position_ids" in takes:
        feeds["position_ids"] = np.arange(length, dtype=np.int64)[None]
    for name, value in takes.items():
        if name.startswith("past_"):
            _, heads, _, size = (d.dim_value for d in value.type.tensor_type.shape.dim)
            feeds[name] = np.zeros((1, heads, length, size), dtype=np.float32)
    return feeds
