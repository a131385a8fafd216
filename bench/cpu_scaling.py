"""Tokens/s of the service's batched generation by CPU thread count, for sizing Lambda memory.

Lambda gives about one vCPU per 1,769 MB of memory (6 vCPUs at 10,240 MB). This runs the same
workload as generation_throughput.py (GPT-2 124M architecture, 8 prompts, 64 new tokens, float32)
with torch limited to 1, 2, 4 and 6 threads, against the 1-thread figure in the same run.
Reproduce with:

    python bench/cpu_scaling.py [--threads 1,2,4,6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from textgen.demo.store import build_gpt2
from textgen.families import Family
from textgen.service import GenerationRequest, GenerationService
from textgen.settings import Settings
from textgen.store import LocalModelStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks, as bench.*
from bench.report import report

PROMPTS = [f"Request number {i} asks the model to continue this sentence:" for i in range(8)]
NEW_TOKENS = 64


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", default="1,2,4,6")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as store:
        build_gpt2(Path(store) / "gpt2-124m")
        settings = Settings(model_store=store, device="cpu", torch_dtype="float32")
        service = GenerationService(settings, LocalModelStore(store))
        request = GenerationRequest("gpt2-124m", PROMPTS, Family.GPT2, max_tokens=NEW_TOKENS)
        service.generate(request)  # load and warm up
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            service.generate(request)
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                result = service.generate(request)
                seconds.append(time.perf_counter() - start)
            tokens = sum(c.tokens for c in result.completions)
            figures[str(threads)] = tokens / statistics.median(seconds)
            print(
                f"{threads} threads: {figures[str(threads)]:7.1f} tok/s "
                f"({figures[str(threads)] / figures[next(iter(figures))]:.2f}x the first)",
                flush=True,
            )
    report({"tokens_per_second_by_threads": figures}, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
