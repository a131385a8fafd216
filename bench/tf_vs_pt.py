"""Tokens/s of framework "tf" (the exported SavedModel) against "pt", same model, same prompts.

GPT-2 124M architecture (random weights, real vocabulary), exported with `textgen export-tf`; 8
prompts, 64 new tokens each, float32 on the CPU, both through the generation service, in one run.
The first call of each compiles (tf: the XLA bucket) and is reported apart. Reproduce with:

    python bench/tf_vs_pt.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from textgen.convert.tf_export import export_tf
from textgen.demo.store import build_gpt2
from textgen.families import Family, Framework
from textgen.service import GenerationRequest, GenerationService
from textgen.settings import Settings
from textgen.store import LocalModelStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks, as bench.*
from bench.report import report

PROMPTS = [f"Prompt {i}: the weather today is" + " very" * i for i in range(8)]
NEW_TOKENS = 64


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    figures: dict[str, dict[str, float]] = {}
    texts: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as store:
        model = build_gpt2(Path(store) / "gpt2-124m")
        started = time.perf_counter()
        export_tf(model)
        export_seconds = time.perf_counter() - started
        settings = Settings(model_store=store, device="cpu", torch_dtype="float32")
        service = GenerationService(settings, LocalModelStore(store))
        for framework in Framework:
            request = GenerationRequest(
                "gpt2-124m", PROMPTS, Family.GPT2, framework=framework, max_tokens=NEW_TOKENS
            )
            first = service.generate(request)
            seconds = []
            for _ in range(args.repeats):
                result = service.generate(request)
                seconds.append(result.timing.generate_seconds)
            texts[framework] = [c.text for c in result.completions]
            tokens = sum(c.tokens for c in result.completions)
            figures[framework] = {
                "load_seconds": first.timing.load_seconds,
                "first_call_seconds": first.timing.generate_seconds,
                "tokens_per_second": tokens / statistics.median(seconds),
            }
    same = sum(a == b for a, b in zip(texts["pt"], texts["tf"], strict=True))
    for name, row in figures.items():
        print(
            f"{name}: load {row['load_seconds']:.1f}s, first call "
            f"{row['first_call_seconds']:.1f}s, then {row['tokens_per_second']:.1f} tok/s"
        )
    ratio = figures["tf"]["tokens_per_second"] / figures["pt"]["tokens_per_second"]
    print(
        f"tf/pt = {ratio:.2f}x; identical texts {same}/{len(PROMPTS)}; "
        f"export took {export_seconds:.0f}s"
    )
    if args.output:
        summary = {
            "export_seconds": export_seconds,
            "identical_texts": same,
            "ratio_tf_over_pt": ratio,
            **figures,
        }
        report(summary, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
