"""Which weight formats keep SmolLM2's quality: held-out perplexity with its weights rounded to
each format (weights only, activations in float32), against float32, on the windows of
bench/scored_perplexity.py (every whole 512-token window of the held-out Moby-Dick chapters, each
second half scored after its first half).

The formats: 8 bits per output channel, symmetric (the int8 export's weights); 4 bits in blocks of
32 input channels with a scale and a zero point each (as llama.cpp's Q4_1, and ONNX Runtime's
MatMulNBits with zero points), for the MLP's products alone (the larger share of the bytes a
token reads) with the rest in 8 bits, and for every product. The output projection stays float32
in each (the export keeps its outlier channels so). Reproduce with:

    python bench/weight_formats.py [--work DIR] [--output bench/results/....json]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.arguments import add_storage_options  # noqa: E402
from bench.cpu_decoding import cpu_description  # noqa: E402
from bench.report import report  # noqa: E402
from bench.scored_perplexity import windows_of  # noqa: E402

MLP = ("gate_proj", "up_proj", "down_proj")
BLOCK = 32


def per_channel_int8(weight: Any) -> Any:
    """[out, in] rounded to 8 bits per output channel, symmetric."""
    scale = (weight.abs().amax(1, keepdim=True) / 127).clamp(min=1e-12)
    return (weight / scale).round().clamp(-127, 127) * scale


def blockwise_int4(weight: Any) -> Any:
    """[out, in] rounded to 4 bits in blocks of BLOCK input channels, with a scale and a zero
    point per block."""
    rows, columns = weight.shape
    blocks = weight.reshape(rows, columns // BLOCK, BLOCK)
    low, high = blocks.amin(-1, keepdim=True), blocks.amax(-1, keepdim=True)
    scale = ((high - low) / 15).clamp(min=1e-12)
    zero = (-low / scale).round().clamp(0, 15)
    levels = ((blocks / scale).round() + zero).clamp(0, 15)
    return ((levels - zero) * scale).reshape(rows, columns)


def rounding_for(variant: str, name: str) -> Callable[[Any], Any] | None:
    mlp = any(part in name for part in MLP)
    if variant == "int8":
        return per_channel_int8
    if variant == "int4_mlp_int8_rest":
        return blockwise_int4 if mlp else per_channel_int8
    if variant == "int4":
        return blockwise_int4
    return None  # float32


def perplexity(model: Any, windows: list[list[int]]) -> float:
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for window in windows:
            logits = model(torch.tensor([window])).logits[0].float()
            log_probs = torch.log_softmax(logits, -1)
            for position in range(len(window) // 2, len(window)):
                total += float(log_probs[position - 1, window[position]])
                count += 1
    return math.exp(-total / count)


def measure(model_dir: Path, variant: str, windows: list[list[int]]) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        for name, module in model.named_modules():
            rounding = rounding_for(variant, name)
            if isinstance(module, torch.nn.Linear) and name != "lm_head" and rounding:
                module.weight.copy_(rounding(module.weight))
    return perplexity(model, windows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    add_storage_options(parser)
    args = parser.parse_args()

    import torch

    from textgen.convert.gguf_import import import_gguf
    from textgen.demo.public_data import smollm2_gguf

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = (args.work or Path(scratch)) / "smollm2-135m"
        if not (model_dir / "config.json").is_file():
            import_gguf(smollm2_gguf(args.cache), model_dir, dtype="float32")
        windows = windows_of(model_dir, args.cache)
        variants = ("float32", "int8", "int4_mlp_int8_rest", "int4")
        figures = {variant: measure(model_dir, variant, windows) for variant in variants}
    base = figures["float32"]
    report(
        {
            "cpu": cpu_description(),
            "model": "SmolLM2-135M-Instruct",
            "scored_tokens": sum(len(w) - len(w) // 2 for w in windows),
            "perplexity": figures,
            "vs_float32": {name: value / base - 1 for name, value in figures.items()},
        },
        args.output,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
