"""`textgen run-batch`'s throughput against the engine's own on the same prompts.

One process, the model loaded once (its ONNX int8 export, the CPU's default path), rounds
interleaved: the same requests (each of the prompts --repeat times, up to 64 new tokens, greedy:
both stop where the model does, at the same tokens) sent straight to the engine, all at once
(GenerationService.submit per request, then waiting for all), and run as an OpenAI batch file's
lines through the batch runner (handlers.openai_api.batch, what `textgen run-batch` runs after
reading the file). Reports generated tokens per second of each (median of the rounds) and the
ratio. Reproduce with:

    python bench/run_batch.py [--work DIR] [--rounds 3] [--repeat 8] [--output ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the benchmarks beside this one, as bench.*

from bench.arguments import add_storage_options  # noqa: E402
from bench.cpu_decoding import cpu_description, prepare  # noqa: E402
from bench.first_token import store_of  # noqa: E402
from bench.prompts import PROMPTS  # noqa: E402
from bench.report import report  # noqa: E402
from handlers.openai_api import protocol as p  # noqa: E402
from handlers.openai_api.batch import COMPLETIONS, BatchRequest, run_batch  # noqa: E402
from handlers.openai_api.serving import OpenAIServing  # noqa: E402
from textgen.engine import SamplingParams  # noqa: E402
from textgen.service import GenerationRequest, GenerationService  # noqa: E402
from textgen.settings import Settings  # noqa: E402
from textgen.store import LocalModelStore  # noqa: E402

NEW_TOKENS = 64


def engine_direct(
    service: GenerationService,
    model: str,
    prompts: list[str],
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Every prompt a request of its own, all submitted at once; tokens/s (by `clock`: the
    process's CPU seconds with time.process_time)."""
    started = clock()
    sampling = SamplingParams(temperature=0.0)  # greedy, as the batch's lines ask
    generations = [
        service.submit(
            GenerationRequest(model, [prompt], None, max_tokens=NEW_TOKENS, sampling=sampling)
        )
        for prompt in prompts
    ]
    tokens = sum(o.tokens for g in generations for o in g.wait())
    return tokens / (clock() - started)


def through_batch(
    serving: OpenAIServing,
    model: str,
    prompts: list[str],
    in_flight: int,
    new_tokens: int = NEW_TOKENS,
) -> float:
    """The same requests as a batch file's lines (greedy, up to `new_tokens` each); tokens/s."""
    requests = [
        BatchRequest(
            index,
            f"line-{index}",
            COMPLETIONS,
            p.CompletionRequest(model=model, prompt=prompt, max_tokens=new_tokens, temperature=0),
        )
        for index, prompt in enumerate(prompts)
    ]
    started = time.perf_counter()
    records = asyncio.run(run_batch(serving, requests, in_flight))
    elapsed = time.perf_counter() - started
    tokens: int = sum(r["response"]["body"]["usage"]["completion_tokens"] for r in records)
    return tokens / elapsed


def engine_bench_arguments(doc: str, rounds: int, repeat: int) -> argparse.Namespace:
    """The arguments of a benchmark that sends the prompts straight to an engine."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--repeat", type=int, default=repeat, help="each prompt this many times")
    add_storage_options(parser)
    return parser.parse_args()


def prepared_store(args: argparse.Namespace, scratch: str, name: str) -> tuple[Path, Settings]:
    """The two models (with their exports) in a store, and settings whose queue takes every
    request of the benchmark at once."""
    work = args.work or Path(scratch)
    store = store_of(prepare(work, args.cache), work / name)
    requests = len(PROMPTS) * args.repeat
    return store, Settings(model_store=str(store), max_queued_requests=requests)


def requests_and_figures(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """The benchmark's prompts, each --repeat times, and the start of its report."""
    prompts = [prompt for prompt in PROMPTS for _ in range(args.repeat)]
    return prompts, {"cpu": cpu_description(), "requests": len(prompts), "models": {}}


def main() -> int:
    args = engine_bench_arguments(__doc__ or "", rounds=3, repeat=8)
    prompts, figures = requests_and_figures(args)
    with tempfile.TemporaryDirectory() as scratch:
        store, settings = prepared_store(args, scratch, "run-batch-store")
        service = GenerationService(settings, LocalModelStore(store))
        serving = OpenAIServing(service)
        in_flight = settings.max_batch_size + settings.max_queued_requests
        for model in ("smollm2-135m", "gpt2-124m"):
            engine_direct(service, model, prompts[:2])  # load and warm up
            runs: dict[str, list[float]] = {"engine": [], "run_batch": []}
            for _ in range(args.rounds):
                runs["engine"].append(engine_direct(service, model, prompts))
                runs["run_batch"].append(through_batch(serving, model, prompts, in_flight))
            medians = {name: statistics.median(values) for name, values in runs.items()}
            figures["models"][model] = {
                "tokens_per_second": medians,
                "runs": runs,
                "ratio_run_batch_to_engine": medians["run_batch"] / medians["engine"],
            }
            print(model, json.dumps(figures["models"][model]), file=sys.stderr, flush=True)
        service.close(grace_seconds=0)
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
