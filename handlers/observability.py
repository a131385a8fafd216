"""Logs, metrics and traces with Powertools for AWS Lambda.

Logs are JSON on stdout, with the request id and cold-start flag on Lambda. Metrics are CloudWatch
Embedded Metric Format lines on stdout, which CloudWatch turns into metrics on Lambda and which
read as plain JSON anywhere else. Tracing (X-Ray) is on when POWERTOOLS_TRACE_DISABLED is false.
"""

from __future__ import annotations

import os
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from textgen.generation import GenerationResult

SERVICE = "serverless-textgen"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "ServerlessTextgen"

logger = Logger(service=SERVICE)
# Only the Lambda handler's cold-start metric goes through this one: Metrics keeps its state at
# class level, shared by every instance and thread (see record_generation).
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

# On Lambda the handler's decorator flushes once per invocation, and says so when a request (a
# health check, a bad request) recorded nothing; that is expected here.
warnings.filterwarnings("ignore", message="No application metrics to publish")


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
