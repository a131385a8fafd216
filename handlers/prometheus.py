"""GET /metrics in Prometheus' text format, with prometheus-client.

Counted where each thing happens, none of it in the decoding loop: requests by route and status in
a middleware; each finished request's tokens, finish reasons and latencies once, when it ends
(GenerationService's `on_finished`); and the engines' state at scrape time, from their own
figures (rows running, requests waiting, KV cache in use, steps by rows for the batch-size
histogram, which the engine counts in plain integers). With PROMETHEUS_MULTIPROC_DIR set (several
server processes), prometheus-client's multiprocess mode merges the processes' counts.

Names follow vLLM's where they mean the same (`textgen_` instead of `vllm:`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import Message, Receive, Scope, Send

from handlers.asgi import HttpMiddleware, on_response_start
from textgen.generation import FinishedRequest
from textgen.service import GenerationService

# Seconds: from a few milliseconds (a GPU's step) to minutes (long generations on a CPU).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
INTER_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

REQUESTS = Counter("textgen_requests", "HTTP requests answered.", ["route", "status_code"])
PROMPT_TOKENS = Counter("textgen_prompt_tokens", "Prompt tokens of requests.", ["model_name"])
GENERATION_TOKENS = Counter("textgen_generation_tokens", "Tokens generated.", ["model_name"])
FINISHED = Counter(
    "textgen_request_finished",
    "Rows finished, by why (length, stop, time_limit, cancelled, error).",
    ["model_name", "finish_reason"],
)
TIME_TO_FIRST_TOKEN = Histogram(
    "textgen_time_to_first_token_seconds",
    "From a request's submission to its first token.",
    ["model_name"],
    buckets=LATENCY_BUCKETS,
)
INTER_TOKEN = Histogram(
    "textgen_inter_token_latency_seconds",
    "A request's mean gap between a row's tokens.",
    ["model_name"],
    buckets=INTER_TOKEN_BUCKETS,
)
E2E = Histogram(
    "textgen_e2e_request_latency_seconds",
    "From a request's submission to its end.",
    ["model_name"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_TIME = Histogram(
    "textgen_queue_time_seconds",
    "From a request's submission to the engine taking it.",
    ["model_name"],
    buckets=LATENCY_BUCKETS,
)


def observe_finished(request: FinishedRequest) -> None:
    """One finished request's figures (GenerationService's `on_finished`)."""
    model = request.model_name
    PROMPT_TOKENS.labels(model).inc(request.prompt_tokens)
    GENERATION_TOKENS.labels(model).inc(request.generation_tokens)
    for reason in request.finish_reasons:
        FINISHED.labels(model, reason).inc()
    TIME_TO_FIRST_TOKEN.labels(model).observe(request.first_token_seconds)
    E2E.labels(model).observe(request.seconds)
    QUEUE_TIME.labels(model).observe(request.queue_seconds)
    if request.inter_token_seconds is not None:
        INTER_TOKEN.labels(model).observe(request.inter_token_seconds)


class EngineCollector(Collector):
    """The engines' state, read at scrape time."""

    def __init__(self, service: GenerationService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        stats = self._service.engine_stats()
        running = GaugeMetricFamily(
            "textgen_running_requests", "Rows being generated.", labels=["model_name"]
        )
        waiting = GaugeMetricFamily(
            "textgen_waiting_requests", "Requests waiting for the engine.", labels=["model_name"]
        )
        kv = GaugeMetricFamily(
            "textgen_kv_cache_usage_ratio",
            "Share of the KV cache's token budget the running rows hold.",
            labels=["model_name"],
        )
        batch = HistogramMetricFamily(
            "textgen_batch_size", "Rows per decoding step.", labels=["model_name"]
        )
        for (name, _framework), figures in stats.items():
            running.add_metric([name], figures.running_sequences)
            waiting.add_metric([name], figures.queued_requests)
            kv.add_metric([name], figures.kv_cache_usage)
            counts = figures.steps_by_rows
            cumulative = [
                (str(bound), float(sum(n for rows, n in counts.items() if rows <= bound)))
                for bound in BATCH_SIZE_BUCKETS
            ]
            steps = float(sum(counts.values()))
            rows_total = float(sum(rows * n for rows, n in counts.items()))
            batch.add_metric([name], [*cumulative, ("+Inf", steps)], rows_total)
        loaded = GaugeMetricFamily("textgen_loaded_models", "Models in memory.")
        loaded.add_metric([], len(stats))
        yield from (running, waiting, kv, batch, loaded)


class CountRequests(HttpMiddleware):
    """Every HTTP answer counted by its route's path template and status."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        answered = {"status": 500}  # what the client gets if nothing was sent

        def note(message: Message) -> None:
            answered["status"] = message["status"]

        try:
            await self.app(scope, receive, on_response_start(send, note))
        finally:
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUESTS.labels(template, str(answered["status"])).inc()


def registry_for(service: GenerationService) -> CollectorRegistry:
    """What /metrics shows: this process's metrics and the engines', or, in multiprocess mode,
    every process's counts merged (and this process's engines)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        registry.register(_Default())
    registry.register(EngineCollector(service))
    return registry


class _Default(Collector):
    """The process-wide default registry's metrics (ours, and the process' own: memory, CPU,
    open files), shown beside a registry of this app's own."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


router = APIRouter(include_in_schema=False)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus' text format."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
