"""The GPU path, measured in one run on one device (run it with the device tool; --smoke tries the
same steps on a CPU with tiny models first).

For GPT-2 124M, a LLaMA of 1B shape (16 layers, hidden 2048, 32 heads / 8 KV heads, intermediate
8192, vocab 128,256) and SmolLM2-135M's shape, all with random weights in bfloat16:

1. ms per decode step at batch 1, 8 and 64: the compiled runner (static KV cache, CUDA graphs)
   against eager Hugging Face generate() on the same weights;
2. tokens/s of 64 concurrent single-prompt HTTP clients against one at a time, through uvicorn
   (bench/concurrent_clients.py, GPT-2);
3. warm-up: seconds from process start to ready (`textgen warm-up`) with a cold and a warm
   compile cache.

    python bench/gpu_decoding.py --output $OUT/gpu_decoding.json
    python bench/gpu_decoding.py --smoke        # a CPU rehearsal with tiny models
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks, as bench.*
from bench.report import report

REPO_ROOT = Path(__file__).resolve().parents[1]
SHAPES: dict[str, dict[str, Any]] = {
    "gpt2-124m": {"family": "gpt2"},
    "llama-1b-shape": {
        "family": "llama",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
    },
    "smollm2-135m-shape": {
        "family": "llama",
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "max_position_embeddings": 2048,
        "rope_theta": 100000.0,
        "tie_word_embeddings": True,
    },
}
SMOKE_SHAPES: dict[str, dict[str, Any]] = {
    "gpt2-tiny": {"family": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4},
    "llama-tiny": {
        "family": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
}


def build(folder: Path, shape: dict[str, Any]) -> Path:
    from textgen.demo.store import build_gpt2, build_llama

    config = {k: v for k, v in shape.items() if k != "family"}
    if shape["family"] == "gpt2":
        return build_gpt2(folder, **config)
    # The GPT-2 vocabulary names the tokens; a larger vocab_size only adds unused rows.
    return build_llama(folder, **config)


def step_times(model_dir: Path, batches: list[int], steps: int, device: str) -> dict[str, Any]:
    """ms per decode step, compiled runner against eager generate(), at each batch size."""
    from textgen.backends.compiled_runner import CompiledRunner
    from textgen.models import load_decoder

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    decoder = load_decoder(model_dir, dtype, torch.device(device))
    width = min(decoder.context_length, 512)
    started = time.perf_counter()
    runner = CompiledRunner(decoder, 0, batches, width)
    figures: dict[str, Any] = {"compile_seconds": time.perf_counter() - started}
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    for batch in batches:
        runner.truncate(0)
        runner.add_rows([[11, 12, 13, 14]] * batch, width, all_logits=False)
        tokens = [15] * batch
        runner.step_greedy(tokens)  # the bucket's graph, warm
        _sync(device)
        started = time.perf_counter()
        for _ in range(steps):
            tokens = runner.step_greedy(tokens)
        _sync(device)
        compiled_ms = 1000 * (time.perf_counter() - started) / steps
        prompt = torch.full((batch, 4), 11, device=device)
        with torch.inference_mode():
            hf.generate(prompt, max_new_tokens=2, do_sample=False, pad_token_id=0)
            _sync(device)
            started = time.perf_counter()
            hf.generate(
                prompt, max_new_tokens=steps, min_new_tokens=steps, do_sample=False, pad_token_id=0
            )
            _sync(device)
        eager_ms = 1000 * (time.perf_counter() - started) / steps
        figures[f"batch_{batch}"] = {
            "compiled_ms_per_step": compiled_ms,
            "eager_generate_ms_per_step": eager_ms,
            "compiled_tokens_per_second": batch * 1000 / compiled_ms,
            "speedup": eager_ms / compiled_ms,
        }
    return figures


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def warm_up_seconds(store: Path, model: str, cache: Path, env: dict[str, str]) -> float:
    """Seconds from starting `textgen warm-up` to its exit (the model loaded and compiled)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "handlers.cli", "warm-up", model, "--store", str(store)],
        cwd=REPO_ROOT,
        env={**os.environ, **env, "COMPILE": "on", "COMPILE_CACHE_DIR": str(cache)},
        check=True,
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    device = "cpu" if args.smoke else "cuda"
    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    batches = [1, 2] if args.smoke else [1, 8, 64]
    steps = 4 if args.smoke else args.steps
    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke test)",
        "torch": torch.__version__,
    }
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch) / "store"
        for name, shape in shapes.items():
            folder = build(store / name, shape)
            figures[name] = step_times(folder, batches, steps, device)
            print(name, json.dumps(figures[name]), file=sys.stderr, flush=True)
        first = next(iter(shapes))
        buckets = {
            "COMPILE_BATCH_BUCKETS": ",".join(map(str, batches[:-1])),
            "MAX_BATCH_SIZE": str(batches[-1]),
            "DEVICE": device,
            "CPU_RUNTIME": "torch",
        }
        cache = Path(scratch) / "compile-cache"
        cold = {**buckets, "TORCHINDUCTOR_CACHE_DIR": str(Path(scratch) / "inductor-cold")}
        warm = {**buckets, "TORCHINDUCTOR_CACHE_DIR": str(Path(scratch) / "inductor-warm")}
        figures["warm_up"] = {
            "model": first,
            "cold_cache_seconds": warm_up_seconds(store, first, cache, cold),
            "warm_cache_seconds": warm_up_seconds(store, first, cache, warm),
        }
        clients = ["--clients", "4", "--requests", "8", "--new-tokens", "8"] if args.smoke else []
        http = subprocess.run(
            [
                sys.executable,
                str(REPO_ROOT / "bench" / "concurrent_clients.py"),
                "--device",
                device,
                *(clients or ["--clients", "64", "--requests", "128"]),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        figures["http_clients"] = json.loads(http.stdout[http.stdout.index("{") :])
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
