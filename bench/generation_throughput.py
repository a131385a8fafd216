"""Tokens/s of the service's generation against the original design's and the previous one's.

The original app called `transformers.pipeline("text-generation")` once per prompt; the service
then called Hugging Face's `generate()` on all prompts of a request as one left-padded batch; now
its own engine runs them. This script times all three on the same model (GPT-2 124M architecture,
random weights, real vocabulary), the same 8 prompts and 64 new tokens each, in one run, and
prints the ratios. Reproduce with:

    python bench/generation_throughput.py                   # float32 and bfloat16 on the CPU
    python bench/generation_throughput.py --device cuda     # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from textgen.demo.store import build_gpt2
from textgen.families import Family
from textgen.service import GenerationRequest, GenerationService
from textgen.settings import Settings
from textgen.store import LocalModelStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks, as bench.*
from bench.prompts import PROMPTS
from bench.report import report

NEW_TOKENS = 64
MODEL = "gpt2-124m"


def timed(run: Callable[[], list[str]], repeats: int) -> tuple[float, list[str]]:
    run()  # warm-up: first-call allocations and kernel selection
    seconds = []
    texts: list[str] = []
    for _ in range(repeats):
        start = time.perf_counter()
        texts = run()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), texts


def pipeline_per_prompt(
    model_dir: Path, dtype: torch.dtype, device: str
) -> Callable[[], list[str]]:
    generator = pipeline(
        "text-generation",
        model=str(model_dir),
        tokenizer=str(model_dir),
        dtype=dtype,
        device=device,
    )

    def run() -> list[str]:
        texts = []
        for prompt in PROMPTS:
            output = generator(
                prompt,
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                do_sample=False,
                return_full_text=False,
            )
            texts.append(output[0]["generated_text"])
        return texts

    return run


def generate_batch(model_dir: Path, dtype: torch.dtype, device: str) -> Callable[[], list[str]]:
    """The previous design: one left-padded batch through Hugging Face's generate()."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True).to(device)
    width = batch["input_ids"].shape[1]

    def run() -> list[str]:
        with torch.inference_mode():
            output = model.generate(
                **batch,
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
        return [tokenizer.decode(row[width:], skip_special_tokens=True) for row in output]

    return run


def service_batch(store: Path, dtype: str, device: str) -> Callable[[], list[str]]:
    settings = Settings(model_store=str(store), torch_dtype=dtype, device=device)  # type: ignore[arg-type]
    service = GenerationService(settings, LocalModelStore(store))
    request = GenerationRequest(
        model_name=MODEL, prompts=PROMPTS, family=Family.GPT2, max_tokens=NEW_TOKENS
    )

    def run() -> list[str]:
        result = service.generate(request)
        tokens = [c.tokens for c in result.completions]
        if tokens != [NEW_TOKENS] * len(PROMPTS):
            raise RuntimeError(f"expected {NEW_TOKENS} tokens per prompt, got {tokens}")
        return [c.text for c in result.completions]

    return run


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    tokens = NEW_TOKENS * len(PROMPTS)
    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "prompts": len(PROMPTS),
        "new_tokens": NEW_TOKENS,
        "results": {},
    }
    with tempfile.TemporaryDirectory() as store:
        build_gpt2(Path(store) / MODEL)  # GPT2Config() defaults: the 124M architecture
        for dtype in args.dtypes.split(","):
            base_s, base_texts = timed(
                pipeline_per_prompt(Path(store) / MODEL, getattr(torch, dtype), args.device),
                args.repeats,
            )
            generate_s, generate_texts = timed(
                generate_batch(Path(store) / MODEL, getattr(torch, dtype), args.device),
                args.repeats,
            )
            ours_s, our_texts = timed(service_batch(Path(store), dtype, args.device), args.repeats)
            same = sum(a == b for a, b in zip(base_texts, our_texts, strict=True))
            same_generate = sum(a == b for a, b in zip(generate_texts, our_texts, strict=True))
            row = {
                "pipeline_per_prompt_tokens_per_s": tokens / base_s,
                "generate_batch_tokens_per_s": tokens / generate_s,
                "service_batch_tokens_per_s": tokens / ours_s,
                "ratio": base_s / ours_s,
                "ratio_to_generate": generate_s / ours_s,
                "identical_texts": f"{same}/{len(PROMPTS)}",
                "identical_to_generate": f"{same_generate}/{len(PROMPTS)}",
            }
            figures["results"][dtype] = row
            print(
                f"{dtype:>9}: pipeline per prompt "
                f"{row['pipeline_per_prompt_tokens_per_s']:8.1f} tok/s"
                f" | generate() batch {row['generate_batch_tokens_per_s']:8.1f} tok/s"
                f" | service {row['service_batch_tokens_per_s']:8.1f} tok/s"
                f" | {row['ratio']:.2f}x pipeline, {row['ratio_to_generate']:.2f}x generate()"
                f" | identical texts {row['identical_texts']}",
                flush=True,
            )
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
