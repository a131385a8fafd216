"""The 8-bit products of a decoding step, alone: this export's per-token product against ONNX
Runtime's other 8-bit kernels, on SmolLM2-135M's shapes.

A graph chains the 4 weighted products of each of SmolLM2's 30 layers (q/k/v, the attention's
output, gate/up, down: 576x960, 576x576, 576x3072, 1536x576), random weights, written each way:

- ours: the int8 export's product (textgen.convert.onnx_writer: each token's activations
  quantized over their own range, MatMulInteger, the zero-point correction; 15 nodes a product);
- dqmm: ONNX Runtime's DynamicQuantizeMatMul, per-channel 8-bit weights (the ORT peer's; one
  activation range for the whole call, so a row's result depends on the rows beside it);
- nbits8: MatMulNBits, 8-bit weights in blocks of 32 with a scale each, accuracy level 4
  (activations quantized to 8 bits per row and block inside the kernel: one node);
- nbits4: the same in 4 bits (for reference: 4-bit weights fail SmolLM2's quality bound,
  bench/weight_formats.py).

Reported: milliseconds per call of the whole chain at 1 row and at 8 rows (medians of interleaved
rounds), and whether each row's output is bit for bit the same alone and inside batches of 2 to
13 rows (what exact answers need). Reproduce with:

    python bench/product_kernels.py [--rounds 7] [--output bench/results/....json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.cpu_decoding import cpu_description  # noqa: E402
from bench.report import report  # noqa: E402

HIDDEN, INTERMEDIATE, LAYERS = 576, 1536, 30
SHAPES = [(HIDDEN, 960), (HIDDEN, HIDDEN), (HIDDEN, 2 * INTERMEDIATE), (INTERMEDIATE, HIDDEN)]
# After q/k/v and gate/up, the chain goes on with the first columns (the next product's input).
NEXT_WIDTH = [HIDDEN, None, INTERMEDIATE, None]
BATCHES = (2, 3, 4, 5, 8, 13)

Product = Callable[[Any, str, str, np.ndarray], str]


def per_channel(weight: np.ndarray) -> Any:
    from textgen.convert.onnx_writer import Int8Weight

    scale = np.abs(weight).max(0) / 127
    values = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
    return Int8Weight(values, scale.astype(np.float32), np.zeros(weight.shape[1], np.int8))


def ours(writer: Any, x: str, name: str, weight: np.ndarray) -> str:
    writer.int8[name] = per_channel(weight)
    return str(writer.linear(x, name, weight, None))


def contrib(writer: Any, op: str, inputs: list[str], **attributes: Any) -> str:
    """A node of ONNX Runtime's own operators (com.microsoft) in the writer's graph."""
    from onnx import helper

    output = f"{inputs[1]}.out"
    writer.nodes.append(
        helper.make_node(op, inputs, [output], domain="com.microsoft", **attributes)
    )
    return output


def dqmm(writer: Any, x: str, name: str, weight: np.ndarray) -> str:
    int8 = per_channel(weight)
    inputs = [x, *(writer.weight(f"{name}.{k}", v) for k, v in vars(int8).items())]
    return contrib(writer, "DynamicQuantizeMatMul", inputs)


def nbits(bits: int) -> Product:
    def product(writer: Any, x: str, name: str, weight: np.ndarray) -> str:
        rows, columns = weight.shape
        blocks = weight.T.reshape(columns, rows // 32, 32)
        top = 2 ** (bits - 1)
        scale = np.abs(blocks).max(-1) / (top - 1)
        levels = np.clip(np.round(blocks / scale[..., None]), 1 - top, top - 1) + top
        packed = levels.astype(np.uint8)  # the zero point by default: 2^(bits - 1)
        if bits == 4:
            packed = packed[..., 0::2] | (packed[..., 1::2] << 4)
        inputs = [x, writer.weight(f"{name}.b", packed), writer.weight(f"{name}.s", scale.ravel())]
        shape = {"K": rows, "N": columns, "bits": bits, "block_size": 32}
        return contrib(writer, "MatMulNBits", inputs, accuracy_level=4, **shape)

    return product


def chain(product: Product, weights: list[list[np.ndarray]]) -> Any:
    from onnx import TensorProto, helper

    from textgen.convert.onnx_writer import OPSET, GraphWriter, ints

    writer = GraphWriter(int8={})
    x = "x"
    for layer, layer_weights in enumerate(weights):
        for index, weight in enumerate(layer_weights):
            x = product(writer, x, f"layer{layer}.{index}", weight)
            width = NEXT_WIDTH[index]
            if width:
                start, end, axis = (
                    writer.weight(f"layer{layer}.{index}.{part}", ints([value]))
                    for part, value in (("start", 0), ("end", width), ("axis", -1))
                )
                x = writer.one("Slice", [x, start, end, axis])
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", HIDDEN])]
    outputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["rows", HIDDEN])]
    graph = helper.make_graph(writer.nodes, "chain", inputs, outputs, writer.initializers)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    import onnxruntime as ort

    rng = np.random.default_rng(0)
    weights = [
        [(rng.standard_normal(shape) * 0.05).astype(np.float32) for shape in SHAPES]
        for _ in range(LAYERS)
    ]
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    kinds: dict[str, Product] = {"ours": ours, "dqmm": dqmm, "nbits8": nbits(8), "nbits4": nbits(4)}
    models = {name: chain(product, weights) for name, product in kinds.items()}
    sessions = {
        name: ort.InferenceSession(m.SerializeToString(), options, ["CPUExecutionProvider"])
        for name, m in models.items()
    }
    figures: dict[str, Any] = {"cpu": cpu_description(), "threads": args.threads, "kinds": {}}
    for name, model in models.items():
        figures["kinds"][name] = {"nodes": len(model.graph.node)}
    for rows in (1, 8):
        x = rng.standard_normal((rows, HIDDEN)).astype(np.float32)
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.rounds):
            for name, session in sessions.items():
                session.run(None, {"x": x})
                started = time.perf_counter()
                for _ in range(args.calls):
                    session.run(None, {"x": x})
                times[name].append((time.perf_counter() - started) / args.calls)
        for name, values in times.items():
            figures["kinds"][name][f"ms_per_call_{rows}_rows"] = statistics.median(values) * 1e3
    x = rng.standard_normal((max(BATCHES), HIDDEN)).astype(np.float32)
    for name, session in sessions.items():
        alone = np.concatenate([session.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])
        figures["kinds"][name]["rows_alone_equal_in_batches"] = all(
            np.array_equal(session.run(None, {"x": x[:n]})[0], alone[:n]) for n in BATCHES
        )
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
