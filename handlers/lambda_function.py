"""The AWS Lambda entry point: the FastAPI app behind Mangum.

Loaded models live in the module-level service, so warm invocations reuse them. Mangum's
lifespan is off: it would run on every invocation.

A cold start begins loading PRELOAD_MODELS (the store's download, the ONNX Runtime session,
the tokenizer) on a thread of its own before anything else is imported, so that loading overlaps
the imports of the web stack; the first request for the model waits for what is left of it. On
demand, Lambda hands the first invocation over as soon as this module is imported (the Init phase
ends then and nothing freezes in between), and the Init phase's 10 s limit is never near. With
provisioned concurrency, Lambda freezes the environment after Init until an invocation comes: there
the import waits for the load, as Init then may take minutes (AWS_LAMBDA_INITIALIZATION_TYPE).
The garbage collector waits for the imports' end (handlers.cold_start).
"""

from __future__ import annotations

# isort: off
from handlers.cold_start import imports_done  # first: the collector waits for the imports' end
from handlers.warm_start import preloading, service  # then: starts loading the models
# isort: on

import os
from collections.abc import Callable
from typing import Any

from mangum import Mangum

from handlers.factory import create_app
from handlers.observability import SERVICE, logger, metrics, tracing_enabled
from handlers.stage_prefix import StagePrefix

app = create_app(service.settings, service)
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


imports_done()  # what the imports made is kept for good: frozen, never scanned again
if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "provisioned-concurrency":
    preloading.join()
