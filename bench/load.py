"""Soak: a real server under a mix of traffic for a bounded time, and what it leaked.

Starts `textgen serve` on loopback over the test models (or --store), then --clients concurrent
clients send, for --duration seconds, a seeded random mix: seed-endpoint requests (both
families), OpenAI completions and chats, streamed and not, prompts scored (echo and logprobs),
clients that disconnect mid-stream, and invalid requests of several kinds, each with the
statuses it may get. With --exact (a store whose models all have their ONNX export, whose
answers never depend on what shares the batch), a request sent again must get the same answer:
greedy texts, seeded completions and streams, scored prompts' logprobs, each compared with its
first. The first fifth of the run, and at least WARM_UP_MIN_S (or --warm-up-s), is warm-up:
every path has run and the allocators have settled.
Reported: requests, statuses, unexpected answers, latency p50/p95/p99 of valid requests,
tokens/s, and the server's resident memory, threads and open files at rest after warm-up and at
the end, and its engines' rows once the load stops. The goals: no unexpected status (nor, with
--exact, a changed answer), memory growth under 5% after warm-up, no more threads or open files
than after warm-up, no engine row left.
Exit status 1 when one is missed. Reproduce with:

    python bench/load.py [--duration 180] [--clients 16] [--output FILE]
    python bench/load.py --exact [--duration 180] ...   (the test models with their exports)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the benchmarks, as bench.*; the tests' model builders

from bench.cpu_decoding import cpu_description  # noqa: E402
from bench.report import report  # noqa: E402

MEMORY_GROWTH_LIMIT = 0.05
WARM_UP_MIN_S = 15.0
SETTLE_S = 2.0  # how long the server is watched at rest for its threads and open files
ANYIO_WORKER_IDLE_S = 10.0  # anyio stops a worker thread idle this long, at the next call


@dataclass(frozen=True)
class Outcome:
    status: int
    tokens: int = 0
    # The request (as a key) and its answer, where the same request must always get it.
    answer: tuple[str, str] | None = None


MIX_MODELS = ("gpt2-test", "llama-test", "llama-chat-test")  # the models the mix asks for
Scenario = Callable[[httpx.AsyncClient, random.Random], Awaitable[Outcome]]


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    tokens: int = 0
    first_answers: dict[str, str] = field(default_factory=dict)
    answers_compared: int = 0

    def check_answer(self, name: str, request: str, answer: str) -> None:
        first = self.first_answers.get(request)
        if first is None:
            self.first_answers[request] = answer
            return
        self.answers_compared += 1
        if answer != first:
            self.unexpected.append(f"{name}: another answer to {request}: {answer!r}, {first!r}")


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(["cold", "start", "model", "token", "stream"]) for _ in range(count))


def seed_body(model: str, rng: random.Random) -> dict[str, Any]:
    return {"model_name": model, "prompts": [words(rng, 6)] * rng.randint(1, 3), "max_tokens": 16}


def request_key(path: str, body: dict[str, Any]) -> str:
    """A request as a key of its answer (for requests that must always get the same one)."""
    return json.dumps({"path": path, **body}, sort_keys=True)


async def seed_request(client: httpx.AsyncClient, rng: random.Random) -> Outcome:
    path, model = rng.choice([("/gpt2_model", "gpt2-test"), ("/llama_model", "llama-test")])
    body = seed_body(model, rng)
    response = await client.post(path, json=body)
    if response.status_code != 200:
        return Outcome(response.status_code)
    results = response.json()["results"]
    texts = json.dumps([r["generated_text"] for r in results])
    tokens = sum(r["generated_tokens"] for r in results)
    return Outcome(200, tokens, (request_key(path, body), texts))  # greedy: one answer


async def completion(client: httpx.AsyncClient, rng: random.Random) -> Outcome:
    """Sampled, half of them seeded (with nucleus sampling, a stop string and each token's
    logprobs: one answer), half not."""
    body: dict[str, Any] = {"model": "gpt2-test", "prompt": "Load", "max_tokens": 12}
    body["n"] = rng.randint(1, 2)
    seeded = rng.random() < 0.5
    if seeded:
        body |= {"seed": 7, "top_p": 0.9, "logprobs": 2, "stop": [" token"]}
    response = await client.post("/v1/completions", json=body)
    if response.status_code != 200:
        return Outcome(response.status_code)
    answer = response.json()
    tokens = answer["usage"]["completion_tokens"]
    if not seeded:
        return Outcome(200, tokens)
    choices = json.dumps([[c["text"], c["logprobs"]] for c in answer["choices"]])
    return Outcome(200, tokens, (request_key("/v1/completions", body), choices))


async def scored(client: httpx.AsyncClient, rng: random.Random) -> Outcome:
    """A prompt scored: every position's logprob (and a few tokens after it, or none)."""
    model = rng.choice(["gpt2-test", "llama-test"])
    body = {
        "model": model,
        "prompt": words(rng, rng.randint(1, 12)),
        "max_tokens": rng.choice([0, 3]),
        "temperature": 0,  # the tokens after it greedy: one answer
        "echo": True,
        "logprobs": 1,
    }
    response = await client.post("/v1/completions", json=body)
    if response.status_code != 200:
        return Outcome(response.status_code)
    answer = response.json()
    logprobs = json.dumps(answer["choices"][0]["logprobs"]["token_logprobs"])
    tokens = answer["usage"]["completion_tokens"]
    return Outcome(200, tokens, (request_key("/v1/completions", body), logprobs))


async def streamed(client: httpx.AsyncClient, rng: random.Random) -> Outcome:
    chat = rng.random() < 0.5
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body: dict[str, Any] = {"max_tokens": 12, "stream": True, "temperature": 0.8, "seed": 1}
    if chat:
        body |= {"model": "llama-chat-test", "messages": [{"role": "user", "content": "Hi"}]}
    else:
        body |= {"model": "llama-test", "prompt": "Stream"}
    chunks, text = 0, []
    async with client.stream("POST", path, json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[len("data: ") :])
                if "error" in chunk:  # failed after its headers went: a server error all the same
                    return Outcome(500)
                chunks += 1
                choice = chunk["choices"][0]
                text.append((choice["delta"].get("content") or "") if chat else choice["text"])
        if response.status_code != 200:
            return Outcome(response.status_code)
    seeded = (request_key(path, body), "".join(text))  # one answer
    return Outcome(200, max(chunks - 2 * chat, 0), seeded)


async def leaving(client: httpx.AsyncClient, rng: random.Random) -> Outcome:
    body = {"model": "gpt2-test", "prompt": "Leave", "max_tokens": 100, "stream": True}
    async with client.stream("POST", "/v1/completions", json=body) as response:
        async for _ in response.aiter_lines():
            break  # the client hangs up after its first line
        return Outcome(response.status_code)


INVALID: list[tuple[str, dict[str, Any], set[int]]] = [
    ("/gpt2_model", {"content": b"{not json"}, {400}),
    ("/gpt2_model", {"json": {"model_name": "nope", "prompts": ["x"]}}, {404}),
    ("/gpt2_model", {"json": {"model_name": "llama-test", "prompts": ["x"]}}, {422}),
    ("/llama_model", {"json": {"model_name": "../x", "prompts": ["x"]}}, {400}),
    ("/v1/completions", {"json": {"model": "gpt2-test", "prompt": "x", "n": 9}}, {400}),
    (
        "/v1/completions",
        {"json": {"model": "gpt2-test", "prompt": "x", "max_tokens": 10**9}},
        {400},
    ),
    ("/v1/chat/completions", {"json": {"model": "gpt2-test", "messages": []}}, {400}),
]


async def invalid(client: httpx.AsyncClient, rng: random.Random) -> Outcome:
    path, request, expected = rng.choice(INVALID)
    response = await client.post(path, **request)
    ok = response.status_code in expected and "error" in response.json()
    return Outcome(response.status_code if ok else -response.status_code)


SCENARIOS: dict[str, tuple[Scenario, float, set[int]]] = {
    # name: (run, weight, statuses a valid run may get: 429 when the queue is full)
    "seed": (seed_request, 3, {200, 429}),
    "completion": (completion, 2, {200, 429}),
    "stream": (streamed, 2, {200, 429}),
    "scored": (scored, 2, {200, 429}),
    "disconnect": (leaving, 1, {200, 429}),
    "invalid": (invalid, 2, set(range(400, 430))),
}


def server_figures(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return {
        "rss_kb": rss,
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "open_files": len(os.listdir(f"/proc/{pid}/fd")),
    }


def figures_at_rest(url: str, pid: int, worker_idle_s: float) -> dict[str, int]:
    """The server's figures at rest: its thread pool pruned, then the fewest threads and files
    seen over SETTLE_S seconds.

    Sync routes run in anyio's worker threads, which stay after a burst until a later call finds
    them idle for `worker_idle_s` (anyio's MAX_IDLE_TIME) and stops them: so the figures are
    taken after that long and one call (GET /health is sync). A connection the client has just
    closed is still an open socket until the server's loop reads its end, and a thread may be
    exiting: one instant's count would call those leaks, while a leak stays for the whole
    window."""
    time.sleep(worker_idle_s + 0.5)
    httpx.get(f"{url}/health", timeout=10)
    samples = []
    for _ in range(int(SETTLE_S / 0.1)):
        samples.append(server_figures(pid))
        time.sleep(0.1)
    return {
        "rss_kb": samples[-1]["rss_kb"],
        "threads": min(s["threads"] for s in samples),
        "open_files": min(s["open_files"] for s in samples),
    }


async def drive(
    url: str, duration: float, clients: int, seed: int, tally: Tally, exact: bool
) -> None:
    names = list(SCENARIOS)
    weights = [SCENARIOS[n][1] for n in names]
    stop_at = time.monotonic() + duration

    async def client_loop(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while time.monotonic() < stop_at:
                name = rng.choices(names, weights)[0]
                run, _, allowed = SCENARIOS[name]
                started = time.perf_counter()
                try:
                    outcome = await run(client, rng)
                except httpx.HTTPError as exc:
                    outcome = Outcome(0)
                    tally.unexpected.append(f"{name}: {type(exc).__name__}: {exc}")
                status = outcome.status
                tally.requests[name] += 1
                tally.statuses[str(abs(status))] += 1
                if status not in allowed:
                    tally.unexpected.append(f"{name}: status {status}")
                elif status == 200 and name != "disconnect":
                    tally.latencies.append(time.perf_counter() - started)
                if exact and outcome.answer is not None:
                    tally.check_answer(name, *outcome.answer)
                tally.tokens += outcome.tokens

    await asyncio.gather(*(client_loop(i) for i in range(clients)))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def server_command(port: int, worker_idle_s: float) -> list[str]:
    """`textgen serve` on loopback; with anyio's idle time for worker threads set to
    `worker_idle_s` (its WorkerThread.MAX_IDLE_TIME, read at each call) unless that is anyio's
    own. A shorter one only makes the rests shorter: threads that leak are not anyio's idle
    workers, which it stops either way."""
    serve = ["serve", "--port", str(port), "--log-level", "error"]
    if worker_idle_s == ANYIO_WORKER_IDLE_S:
        return [sys.executable, "-m", "handlers.cli", *serve]
    launcher = (
        "import sys, anyio._backends._asyncio as backend\n"
        "if not hasattr(backend.WorkerThread, 'MAX_IDLE_TIME'):\n"
        "    sys.exit('this anyio has no WorkerThread.MAX_IDLE_TIME: leave --worker-idle-s out')\n"
        f"backend.WorkerThread.MAX_IDLE_TIME = {worker_idle_s!r}\n"
        "from handlers.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", launcher, *serve]


def soak(
    store: Path,
    duration: float,
    clients: int,
    seed: int,
    worker_idle_s: float = ANYIO_WORKER_IDLE_S,
    exact: bool = False,
    warm_up_s: float | None = None,
    memory_growth_limit: float = MEMORY_GROWTH_LIMIT,
) -> dict[str, Any]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MODEL_STORE": str(store),
        "MAX_QUEUED_REQUESTS": str(4 * clients),
        "MAX_LOADED_MODELS": str(len(MIX_MODELS)),  # each stays loaded, as in production
    }
    log = Path(os.environ.get("LOAD_SERVER_LOG", os.devnull)).open("w")  # noqa: SIM115
    server = subprocess.Popen(
        server_command(port, worker_idle_s), cwd=REPO_ROOT, env=env, stdout=log, stderr=log
    )
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        warm_up = Tally()
        warm_up_s = warm_up_s or max(duration / 5, WARM_UP_MIN_S)
        asyncio.run(drive(url, warm_up_s, clients, seed, warm_up, exact))
        after_warm_up = figures_at_rest(url, server.pid, worker_idle_s)
        tally = Tally(first_answers=warm_up.first_answers)  # compared with the warm-up's too
        started = time.perf_counter()
        asyncio.run(drive(url, duration - warm_up_s, clients, seed + 1, tally, exact))
        elapsed = time.perf_counter() - started
        engines: dict[str, Any] = {}
        for _ in range(200):  # the engines finish what the disconnects left, then idle
            engines = httpx.get(f"{url}/health", timeout=10).json()["engines"]
            if all(e["running_sequences"] == e["queued_requests"] == 0 for e in engines.values()):
                break
            time.sleep(0.05)
        end = figures_at_rest(url, server.pid, worker_idle_s)
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    growth = end["rss_kb"] / after_warm_up["rss_kb"] - 1
    rows_left = sum(e["running_sequences"] + e["queued_requests"] for e in engines.values())
    summary = {
        "cpu": cpu_description(),
        "duration_s": duration,
        "clients": clients,
        "worker_idle_s": worker_idle_s,
        "warm_up_s": warm_up_s,
        "requests": dict(tally.requests),
        "statuses": dict(tally.statuses),
        "unexpected": tally.unexpected[:20],
        "unexpected_count": len(tally.unexpected),
        "unexpected_in_warm_up": warm_up.unexpected[:20],
        "exact": exact,
        "answers_compared": warm_up.answers_compared + tally.answers_compared,
        "latency_p50_s": percentile(tally.latencies, 0.5),
        "latency_p95_s": percentile(tally.latencies, 0.95),
        "latency_p99_s": percentile(tally.latencies, 0.99),
        "tokens_per_second": tally.tokens / elapsed,
        "server_after_warm_up": after_warm_up,
        "server_at_end": end,
        "memory_growth": growth,
        "memory_growth_limit": memory_growth_limit,
        "engine_rows_left": rows_left,
    }
    summary["goals_met"] = {
        "no_unexpected_status": not tally.unexpected and not warm_up.unexpected,
        "memory_flat": growth < memory_growth_limit,
        "no_leaked_threads": end["threads"] <= after_warm_up["threads"],
        "no_leaked_files": end["open_files"] <= after_warm_up["open_files"],
        "no_engine_rows_left": rows_left == 0,
    }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=180)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--store",
        type=Path,
        help="default: the test models, built here (with --exact, and their int8 exports)",
    )
    parser.add_argument("--output", type=Path)
    parser.add_argument(
        "--worker-idle-s",
        type=float,
        default=ANYIO_WORKER_IDLE_S,
        help="how long the server's idle worker threads stay (anyio's own: 10): the two rests "
        "at which its threads are counted each wait this long",
    )
    parser.add_argument(
        "--exact",
        action="store_true",
        help="a request sent again must get the same answer (a store whose models all have "
        "their ONNX export)",
    )
    parser.add_argument(
        "--warm-up-s",
        type=float,
        help=f"warm-up seconds, within --duration (default: a fifth, at least {WARM_UP_MIN_S:g})",
    )
    parser.add_argument(
        "--memory-growth-limit",
        type=float,
        default=MEMORY_GROWTH_LIMIT,
        help=f"the growth of resident memory after warm-up that is a leak (default "
        f"{MEMORY_GROWTH_LIMIT:g}; a short run's allocators are still settling)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        store = args.store
        if store is None:
            from tests.support.models import build_test_store

            store = build_test_store(Path(scratch))
            if args.exact:  # the default path: each model the mix uses with its export
                models = [str(store / name) for name in MIX_MODELS]
                export = [sys.executable, "-m", "handlers.cli", "export-onnx", *models]
                subprocess.run(export, cwd=REPO_ROOT, check=True, capture_output=True)
        if args.exact:
            from textgen.model_files import ONNX_EXPORT_DIR, ONNX_METADATA_FILE

            metadata = Path(ONNX_EXPORT_DIR, ONNX_METADATA_FILE)
            without = [m for m in MIX_MODELS if not (store / m / metadata).is_file()]
            if without:  # served by PyTorch, their answers may change with the batch
                parser.error(f"--exact needs an export of every model the mix uses: {without}")
        summary = soak(
            store,
            args.duration,
            args.clients,
            args.seed,
            args.worker_idle_s,
            args.exact,
            args.warm_up_s,
            args.memory_growth_limit,
        )
    report(summary, args.output)
    return 0 if all(summary["goals_met"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
