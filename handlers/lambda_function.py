"""The AWS Lambda entry point: the FastAPI app behind Mangum.

Loaded models live in the app's module-level service, so warm invocations reuse them. Mangum's
lifespan is off: it would run on every invocation.
"""

from __future__ import annotations

from typing import Any

from mangum import Mangum

from handlers.app import app
from handlers.observability import logger, metrics, tracer
from handlers.stage_prefix import StagePrefix

asgi_handler = Mangum(StagePrefix(app), lifespan="off")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = asgi_handler(event, context)
    return response
