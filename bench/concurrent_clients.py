"""Many clients at once against one at a time, over HTTP, on the same server.

Starts `textgen serve` on loopback with a GPT-2 124M-architecture model (random weights, real
vocabulary; or --model-dir), then sends the same single-prompt requests (mixed prompt lengths,
--new-tokens new tokens each) first one after another, then from --clients concurrent clients,
and reports aggregate tokens/s of each, their ratio, and per-request latency p50/p95 (and time to
first token, where the server streams). Reproduce with:

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


async def one_request(client: httpx.AsyncClient, prompt: str, new_tokens: int) -> tuple[float, int]:
    body = {"model_name": MODEL, "prompts": [prompt], "max_tokens": new_tokens}
    started = time.perf_counter()
    response = await client.post("/gpt2_model", json=body)
    response.raise_for_status()
    return time.perf_counter() - started, response.json()["results"][0]["generated_tokens"]


async def run(url: str, work: list[str], clients: int, new_tokens: int) -> dict[str, Any]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for prompt in work:
        queue.put_nowait(prompt)
    latencies: list[float] = []
    tokens = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal tokens
        while not queue.empty():
            prompt = queue.get_nowait()
            seconds, generated = await one_request(client, prompt, new_tokens)
            latencies.append(seconds)
            tokens += generated

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "requests": len(latencies),
        "tokens": tokens,
        "wall_seconds": wall,
        "tokens_per_second": tokens / wall,
        "latency_p50_s": statistics.median(ordered),
        "latency_p95_s": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model-dir", type=Path, help="a GPT-2 model folder (default: built)")
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    work = prompts(args.requests)
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch)
        if args.model_dir:
            (store / MODEL).symlink_to(args.model_dir.resolve())
        else:
            from textgen.demo import build_gpt2

            build_gpt2(store / MODEL)  # GPT2Config() defaults: the 124M architecture
        port = free_port()
        env = {"DEVICE": args.device, "MAX_BATCH_SIZE": str(max(args.clients, 32))}
        server = start_server(store, port, env)
        try:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(run(url, work[:2], 1, 4))  # load and warm up
            sequential = asyncio.run(run(url, work, 1, args.new_tokens))
            concurrent = asyncio.run(run(url, work, args.clients, args.new_tokens))
        finally:
            server.terminate()
            server.wait(timeout=60)
    figures = {
        "device": args.device,
        "new_tokens": args.new_tokens,
        "one_at_a_time": sequential,
        "concurrent": concurrent,
        "throughput_ratio": concurrent["tokens_per_second"] / sequential["tokens_per_second"],
    }
    print(
        f"one at a time: {sequential['tokens_per_second']:.1f} tok/s, latency p50 "
        f"{sequential['latency_p50_s']:.2f} s p95 {sequential['latency_p95_s']:.2f} s\n"
        f"{args.clients} clients: {concurrent['tokens_per_second']:.1f} tok/s, latency p50 "
        f"{concurrent['latency_p50_s']:.2f} s p95 {concurrent['latency_p95_s']:.2f} s\n"
        f"ratio {figures['throughput_ratio']:.2f}x",
        file=sys.stderr,
    )
    text = json.dumps(figures, indent=2) + "\n"
    if args.output:
        args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
