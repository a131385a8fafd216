"""Why the fast path's int8 export is built as it is: SmolLM2's held-out perplexity, and the time
of an 8-row decoding step, through variants of the export, against float32 PyTorch.

The decoding graph of every variant quantizes the same float32 graph (textgen.convert.onnx_graph,
written here from the model) with ONNX Runtime's `quantize_dynamic`, unsigned per-channel weights;
prompts go through one of: a prompt graph written as the export writes it, with the variant's own
8-bit weights and each token's activations over their own range; the float32 graph; or the decoding
graph itself (one activation range per tensor). Each is scored as bench/cpu_decoding.py scores: each
512-token window of the held-out chapters is half prompt, and its second half is decoded a token at
a time, teacher-forced.

- export: what `textgen export-onnx` writes: int8 decoding steps, each weight channel quantized
  symmetrically (zero point 128); prompts through its per-token int8 graph;
- float32_prompts: the export with prompts in float32 (the export before the per-token graph:
  two more copies of the weights in memory);
- asymmetric_weights: the export with ONNX Runtime's default, each channel over its own min..max
  (in both graphs);
- per_tensor_prompts: prompts through the decoding graph (one range per tensor);
- per_tensor_prompts_first_token_apart: the same, each prompt's first token in a call of its
  own, so that its outlier activations (the attention sink) set no other token's range;
- torch_bfloat16: not ONNX: the engine on PyTorch in bfloat16, the 16-bit CPU path;
- float32_lm_head / float32_down_proj: the export, but with the output projection, or every MLP
  down projection, left in float32 (in both graphs).

Decoding-step times (8 rows, median of 3) are indicative only: run this on a quiet machine.

Reproduce (WORK: the --work folder of a bench/cpu_decoding.py run, which holds the models):

    python bench/quantization_choices.py --work WORK \
        --output bench/results/quantization_choices-cpu-2core.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "layers")]

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from bench.arguments import add_storage_options  # noqa: E402
from bench.cpu_decoding import (  # noqa: E402
    PERPLEXITY_TOKENS,
    PERPLEXITY_WINDOW,
    _decoded_log_likelihood,
    score_windows,
)
from bench.prompts import PROMPTS  # noqa: E402
from bench.report import report  # noqa: E402
from textgen.backends.onnx_runner import OnnxRunner  # noqa: E402

# variant: (MatMuls kept in float32, symmetric weights, prompt graph, first token apart)
VARIANTS = {
    "export": ((), True, "per_token", False),
    "float32_prompts": ((), True, "float32", False),
    "asymmetric_weights": ((), False, "per_token", False),
    "per_tensor_prompts": ((), True, "decoding", False),
    "per_tensor_prompts_first_token_apart": ((), True, "decoding", True),
    "float32_lm_head": (("lm_head",), True, "per_token", False),
    "float32_down_proj": (("down_proj",), True, "per_token", False),
}
STEP_ROWS, STEPS = 8, 64


def quantized(float32_graph: Path, keep: tuple[str, ...], symmetric: bool, output: Path) -> Path:
    import onnx

    from tests.support.ort_quantizer import quantize_int8

    graph = onnx.load(str(float32_graph), load_external_data=False)
    shapes = {tensor.name: list(tensor.dims) for tensor in graph.graph.initializer}
    weighted = [n for n in graph.graph.node if n.op_type == "MatMul" and n.input[1] in shapes]
    hidden = shapes[weighted[-1].input[1]][0]  # the output projection, last, reads it
    excluded: list[str] = []
    if "lm_head" in keep:
        excluded.append(weighted[-1].name)
    if "down_proj" in keep:  # the products that narrow a wider input to the hidden size
        excluded += [
            n.name
            for n in weighted[:-1]
            if shapes[n.input[1]][1] == hidden and shapes[n.input[1]][0] > hidden
        ]
    return quantize_int8(float32_graph, output, symmetric, tuple(excluded))


def continue_prompt(runner: Any, tokens: list[int], session: Any) -> np.ndarray:
    """Feed more prompt tokens to the runner's one row (its private state: a bench-only
    variant); the logits of the last."""
    start, count = int(runner._lengths[0]), len(tokens)
    runner._reserve(1, start + count)
    logits = runner._run(
        session,
        slice(0, 1),
        np.array([tokens], dtype=np.int64),
        np.arange(start, start + count)[None],
        np.array([start + count]),
        np.array([[count - 1]], dtype=np.int64),
    )
    runner._lengths = runner._lengths + count
    result: np.ndarray = logits[0, 0]
    return result


def perplexity(runner: Any, windows: list[list[int]], apart: bool, session: Any) -> float:
    context = PERPLEXITY_WINDOW // 2

    def first_token_apart(prompt: list[int], width: int) -> np.ndarray:
        runner.add_rows([prompt[:1]], width, all_logits=False)
        return continue_prompt(runner, prompt[1:], session)

    total = score_windows(runner, windows, context, first_token_apart if apart else None)
    return math.exp(-total / (len(windows) * (PERPLEXITY_WINDOW - context)))


def step_ms(runner: Any, prompts: list[list[int]]) -> float:
    times = []
    for _ in range(3):
        runner.add_rows(prompts, 200, all_logits=False)
        started = time.perf_counter()
        for _ in range(STEPS):
            runner.step([1] * len(prompts))
        times.append((time.perf_counter() - started) / STEPS * 1000)
        runner.truncate(0)
    return statistics.median(times)


class TwoGraphRunner(OnnxRunner):
    """The service's runner with prompts through a session of their own (the variants' prompt
    graphs), steps through another. Their bindings never mix: a prompt's are made for prompts."""

    def __init__(
        self, steps: Any, prompts: Any, metadata: dict[str, Any], pad_id: int, embedding: Any
    ) -> None:
        super().__init__(steps, metadata, pad_id, embedding)
        self._prompts = prompts

    def _prefill_rows(self, rows: slice, prompts: list[list[int]], all_logits: bool) -> Any:
        steps, self._session = self._session, self._prompts
        try:
            return super()._prefill_rows(rows, prompts, all_logits)
        finally:
            self._session = steps


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    add_storage_options(parser, work_required=True)
    args = parser.parse_args()

    from tokenizers import Tokenizer

    from tests.support.ort_quantizer import int8_weights
    from textgen.backends.onnx_backend import session_options
    from textgen.backends.tokenizer import ModelTokenizer
    from textgen.convert.onnx_graph import build_graph, token_embedding
    from textgen.demo.moby_dick import split
    from textgen.model_files import ONNX_EMBEDDING_INPUT
    from textgen.models import load_decoder
    from textgen.settings import Settings

    model = args.work / "smollm2-135m"
    export = model / "onnx"
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    held_out = "\n\n".join(split(args.cache).held_out.values())
    ids = tokenizer.encode(held_out, add_special_tokens=False).ids[:PERPLEXITY_TOKENS]
    windows = [ids[i : i + PERPLEXITY_WINDOW] for i in range(0, len(ids), PERPLEXITY_WINDOW)]
    windows = [w for w in windows if len(w) == PERPLEXITY_WINDOW]
    prompts = [e.ids for e in tokenizer.encode_batch(PROMPTS[:STEP_ROWS])]
    metadata = json.loads((export / "textgen.json").read_text())
    pad_id = ModelTokenizer(model).pad_id
    options = session_options(Settings(torch_threads=args.threads))

    reference = _decoded_log_likelihood(
        model, "torch", windows, PERPLEXITY_WINDOW // 2, args.threads
    )
    float32 = math.exp(-reference / (len(windows) * PERPLEXITY_WINDOW // 2))
    figures: dict[str, Any] = {"threads": args.threads, "float32_perplexity": float32}
    # The 16-bit path (PyTorch bfloat16, chosen on CPUs with AVX512-BF16 or AMX); elsewhere
    # PyTorch emulates it: slower, the same numbers.
    bfloat16 = _decoded_log_likelihood(
        model, "torch", windows, PERPLEXITY_WINDOW // 2, args.threads, torch_dtype="bfloat16"
    )
    value = math.exp(-bfloat16 / (len(windows) * PERPLEXITY_WINDOW // 2))
    figures["torch_bfloat16"] = {
        "perplexity": value,
        "vs_float32_percent": 100 * (value / float32 - 1),
    }
    print("torch_bfloat16", figures["torch_bfloat16"], file=sys.stderr, flush=True)
    decoder = load_decoder(model, torch.float32, torch.device("cpu"))
    # The float32 table: these graphs are built here, not the export's (whose table is 8-bit).
    embedding = {ONNX_EMBEDDING_INPUT: token_embedding(decoder, "llama")}
    with tempfile.TemporaryDirectory() as scratch:
        float32_graph = Path(scratch) / "float32.onnx"
        onnx.save(build_graph(decoder, "llama"), float32_graph)
        float32_session = ort.InferenceSession(str(float32_graph), options)
        for name, (keep, symmetric, prompt_graph, apart) in VARIANTS.items():
            output = Path(scratch) / f"{name}.onnx"
            graph = quantized(float32_graph, keep, symmetric, output)
            decode = ort.InferenceSession(str(graph), options)
            prompts_session = decode
            if prompt_graph == "float32":
                prompts_session = float32_session
            elif prompt_graph == "per_token":
                per_token = Path(scratch) / f"{name}-prompts.onnx"
                onnx.save(build_graph(decoder, "llama", int8_weights(onnx.load(graph))), per_token)
                prompts_session = ort.InferenceSession(str(per_token), options)
            runner = TwoGraphRunner(decode, prompts_session, metadata, pad_id, embedding)
            value = perplexity(runner, windows, apart, decode)
            figures[name] = {
                "perplexity": value,
                "vs_float32_percent": 100 * (value / float32 - 1),
                "decode_step_ms_8_rows": step_ms(runner, prompts),
            }
            print(name, figures[name], file=sys.stderr, flush=True)
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
