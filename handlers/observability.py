"""Logs, metrics and traces with Powertools for AWS Lambda.

Logs are JSON on stdout, with the request id and cold-start flag on Lambda. Metrics are CloudWatch
Embedded Metric Format lines on stdout, which CloudWatch turns into metrics on Lambda and which
read as plain JSON anywhere else. Tracing (X-Ray) is on where Powertools traces: on Lambda, unless
POWERTOOLS_TRACE_DISABLED is true (see tracing_enabled).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.shared import constants
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

from textgen.generation import FinishedRequest, GenerationResult

SERVICE = "serverless-textgen"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "ServerlessTextgen"

logger = Logger(service=SERVICE)
# Only the Lambda handler's cold-start metric goes through this one: Metrics keeps its state at
# class level, shared by every instance and thread (see record_generation).
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

# On Lambda the handler's decorator flushes once per invocation, and says so when a request (a
# health check, a bad request) recorded nothing; that is expected here.
warnings.filterwarnings("ignore", message="No application metrics to publish")


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether Powertools' Tracer would trace here, by its own rules: on Lambda, not in SAM's or
    Chalice's local emulators, POWERTOOLS_TRACE_DISABLED not true. Only then is the Tracer made:
    making it imports the X-Ray SDK, a third of the handler's import, even when disabled."""
    setting = environ.get(constants.TRACER_DISABLED_ENV) or "false"  # empty: the default
    disabled = resolve_truthy_env_var_choice(env=setting)
    local = environ.get(constants.SAM_LOCAL_ENV) or environ.get(constants.CHALICE_LOCAL_ENV)
    return bool(environ.get(constants.LAMBDA_TASK_ROOT_ENV)) and not local and not disabled


def emf_finished(request: FinishedRequest) -> None:
    """On Lambda, a finished request's figures under the names /metrics gives them (without
    Prometheus' `_total`), added to the handler's metrics: CloudWatch gets them in the one EMF
    line that handler writes per invocation (the request ends, and this runs, before the
    handler answers). A Lambda environment runs one invocation at a time, so the shared state
    of `metrics` holds this invocation's alone."""
    metrics.add_dimension(name="model_name", value=request.model_name)
    counts = {
        "textgen_prompt_tokens": request.prompt_tokens,
        "textgen_generation_tokens": request.generation_tokens,
        "textgen_request_finished": len(request.finish_reasons),
    }
    for name, count in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    seconds = {
        "textgen_time_to_first_token_seconds": request.first_token_seconds,
        "textgen_e2e_request_latency_seconds": request.seconds,
        "textgen_queue_time_seconds": request.queue_seconds,
        "textgen_inter_token_latency_seconds": request.inter_token_seconds,
    }
    for name, value in seconds.items():
        if value is not None:
            metrics.add_metric(name=name, unit=MetricUnit.Seconds, value=value)


def record_generation(result: GenerationResult) -> None:
    """Log the generation and write its metrics as one record of its own, at once.

    uvicorn runs requests in a thread pool: a per-request EphemeralMetrics keeps each record's
    dimension with its own figures, where the shared Metrics state would mix concurrent requests.
    """
    timing = result.timing
    request_metrics = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    request_metrics.add_dimension(name="model", value=result.model.name)
    request_metrics.add_metric(name="Prompts", unit=MetricUnit.Count, value=len(result.completions))
    request_metrics.add_metric(
        name="TokensPerSecond",
        unit=MetricUnit.CountPerSecond,
        value=result.throughput.tokens_per_second,
    )
    if timing.model_loaded:
        request_metrics.add_metric(
            name="ModelLoadSeconds", unit=MetricUnit.Seconds, value=timing.load_seconds
        )
        request_metrics.add_metric(
            name="DownloadBytes", unit=MetricUnit.Bytes, value=timing.download_bytes
        )
    request_metrics.flush_metrics()
    logger.info(
        "generated",
        extra={
            "model": result.model.name,
            "framework": str(result.framework),
            "prompts": len(result.completions),
            "tokens": sum(c.tokens for c in result.completions),
            "tokens_per_second": round(result.throughput.tokens_per_second, 2),
            "model_loaded": timing.model_loaded,
            "finish_reasons": sorted({c.finish_reason for c in result.completions}),
        },
    )
