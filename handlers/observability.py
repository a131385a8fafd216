"""Logs, metrics and traces with Powertools for AWS Lambda.

Logs are JSON on stdout, with the request id and cold-start flag on Lambda. Metrics are CloudWatch
Embedded Metric Format lines on stdout, which CloudWatch turns into metrics on Lambda and which
read as plain JSON anywhere else. Tracing (X-Ray) is on when POWERTOOLS_TRACE_DISABLED is false.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from textgen.service import GenerationResult

SERVICE = "serverless-textgen"
NAMESPACE = "ServerlessTextgen"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

# On Lambda the handler's decorator flushes once per invocation, and says so when a request (a
# health check, a bad request) recorded nothing; that is expected here.
warnings.filterwarnings("ignore", message="No application metrics to publish")


def record_generation(result: GenerationResult, *, flush: bool) -> None:
    """Log the generation and add its metrics; `flush` writes them now (off Lambda)."""
    timing = result.timing
    metrics.add_dimension(name="model", value=result.model.name)
    metrics.add_metric(name="Prompts", unit=MetricUnit.Count, value=len(result.completions))
    metrics.add_metric(
        name="TokensPerSecond",
        unit=MetricUnit.CountPerSecond,
        value=result.throughput.tokens_per_second,
    )
    if timing.model_loaded:
        metrics.add_metric(
            name="ModelLoadSeconds", unit=MetricUnit.Seconds, value=timing.load_seconds
        )
        metrics.add_metric(name="DownloadBytes", unit=MetricUnit.Bytes, value=timing.download_bytes)
    if flush:
        metrics.flush_metrics()
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
