"""Many clients at once against one at a time, over HTTP, on the same server.

Starts `textgen serve` on loopback with a GPT-2 124M-architecture model (random weights, real
vocabulary; or --model-dir), then sends the same single-prompt requests (mixed prompt lengths,
--new-tokens new tokens each, greedy) first one after another, then from --clients concurrent
clients, and reports aggregate tokens/s of each, their ratio, and per-request latency and time
to first token, p50 and p95. Requests stream through /v1/completions (time to first token is the
first chunk's arrival), or go to /gpt2_model with --api seed. Reproduce with:

    python bench/concurrent_clients.py [--clients 16] [--requests 32] [--new-tokens 64]
    python bench/concurrent_clients.py --clients 64 --requests 128 --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks, as bench.*
from bench.report import report

MODEL = "gpt2-124m"
PROMPT_TEXT = (
    "Serverless functions start cold, so the first request of a new instance has to fetch the "
    "model, verify it and load it before any token can be generated for the caller who waits"
)
PROMPT_WORDS = PROMPT_TEXT.split(" ")


def prompts(count: int) -> list[str]:
    """Prompts of mixed lengths, 3 to 30 words, each its own."""
    return [f"Request {i}: " + " ".join(PROMPT_WORDS[: 3 + (i * 7) % 28]) for i in range(count)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(store: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "handlers.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--store", str(store), "--log-level", "warning"],
        env={**os.environ, **env},
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise TimeoutError("the server did not start")


async def seed_request(
    client: httpx.AsyncClient, prompt: str, new_tokens: int
) -> tuple[float, float, int]:
    """(latency, time to first token, tokens): the seed endpoint answers whole."""
    body = {"model_name": MODEL, "prompts": [prompt], "max_tokens": new_tokens}
    started = time.perf_counter()
    response = await client.post("/gpt2_model", json=body)
    response.raise_for_status()
    seconds = time.perf_counter() - started
    return seconds, seconds, response.json()["results"][0]["generated_tokens"]


async def streamed_request(
    client: httpx.AsyncClient, prompt: str, new_tokens: int
) -> tuple[float, float, int]:
    """(latency, time to first token, tokens) of a streamed /v1/completions request."""
    body = {
        "model": MODEL,
        "prompt": prompt,
        "max_tokens": new_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if chunk["choices"] and chunk["choices"][0]["text"] and first is None:
                first = time.perf_counter() - started
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    seconds = time.perf_counter() - started
    return seconds, first if first is not None else seconds, tokens


async def run(url: str, work: list[str], clients: int, new_tokens: int, api: str) -> dict[str, Any]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for prompt in work:
        queue.put_nowait(prompt)
    latencies: list[float] = []
    firsts: list[float] = []
    tokens = 0
    one_request = streamed_request if api == "openai" else seed_request

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal tokens
        while not queue.empty():
            prompt = queue.get_nowait()
            seconds, first, generated = await one_request(client, prompt, new_tokens)
            latencies.append(seconds)
            firsts.append(first)
            tokens += generated

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "tokens": tokens,
        "wall_seconds": wall,
        "tokens_per_second": tokens / wall,
        "latency_p50_s": _percentile(latencies, 0.5),
        "latency_p95_s": _percentile(latencies, 0.95),
        "first_token_p50_s": _percentile(firsts, 0.5),
        "first_token_p95_s": _percentile(firsts, 0.95),
    }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if fraction == 0.5:
        return statistics.median(ordered)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--api", default="openai", choices=["openai", "seed"])
    parser.add_argument("--model-dir", type=Path, help="a GPT-2 model folder (default: built)")
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    work = prompts(args.requests)
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch)
        if args.model_dir:
            (store / MODEL).symlink_to(args.model_dir.resolve())
        else:
            from textgen.demo.store import build_gpt2

            build_gpt2(store / MODEL)  # GPT2Config() defaults: the 124M architecture
        port = free_port()
        env = {"DEVICE": args.device, "MAX_BATCH_SIZE": str(max(args.clients, 32))}
        server = start_server(store, port, env)
        try:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(run(url, work[:2], 1, 4, args.api))  # load and warm up
            sequential = asyncio.run(run(url, work, 1, args.new_tokens, args.api))
            concurrent = asyncio.run(run(url, work, args.clients, args.new_tokens, args.api))
        finally:
            server.terminate()
            server.wait(timeout=60)
    figures = {
        "device": args.device,
        "api": args.api,
        "new_tokens": args.new_tokens,
        "one_at_a_time": sequential,
        "concurrent": concurrent,
        "throughput_ratio": concurrent["tokens_per_second"] / sequential["tokens_per_second"],
    }
    for name, row in (("one at a time", sequential), (f"{args.clients} clients", concurrent)):
        print(
            f"{name}: {row['tokens_per_second']:.1f} tok/s, latency p50 "
            f"{row['latency_p50_s']:.2f} s p95 {row['latency_p95_s']:.2f} s, first token p50 "
            f"{row['first_token_p50_s']:.2f} s p95 {row['first_token_p95_s']:.2f} s",
            file=sys.stderr,
        )
    print(f"ratio {figures['throughput_ratio']:.2f}x", file=sys.stderr)
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
