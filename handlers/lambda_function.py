"""The AWS Lambda entry point: the FastAPI app behind Mangum.

Loaded models live in the app's module-level service, so warm invocations reuse them. Mangum's
lifespan is off: it would run on every invocation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mangum import Mangum

from handlers.app import app
from handlers.observability import SERVICE, logger, metrics, tracing_enabled
from handlers.stage_prefix import StagePrefix

asgi_handler = Mangum(StagePrefix(app), lifespan="off")
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def traced(function: Handler) -> Handler:
    """X-Ray segments around each invocation where tracing is on; the Tracer (and the X-Ray SDK
    it imports) is made only then."""
    if not tracing_enabled():
        return function
    from aws_lambda_powertools import Tracer

    traced_function: Handler = Tracer(service=SERVICE).capture_lambda_handler(
        function, capture_response=False
    )
    return traced_function


@logger.inject_lambda_context(clear_state=True)
@traced
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = asgi_handler(event, context)
    return response
