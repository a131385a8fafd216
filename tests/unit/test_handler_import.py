"""What importing the Lambda handler loads: the web stack and the engine's light parts, nothing
the first request does not need (a cold start pays every import); the X-Ray SDK (a third of the
import) only where Powertools would trace, on Lambda with POWERTOOLS_TRACE_DISABLED not true."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.observability import tracing_enabled
from tests.support.fresh_process import fresh_python

# The third-party packages a handler import may load (no model preloaded, a local store): what
# routing and checking the first request needs. The model's own (onnxruntime, numpy, tokenizers,
# and torch or TensorFlow where those serve it) load with the model: on a thread of their own
# during the imports when PRELOAD_MODELS names it (handlers/warm_start.py).
MAY_LOAD = {
    "annotated_doc",
    "annotated_types",
    "anyio",
    "aws_lambda_powertools",
    "botocore",  # its package alone: Powertools reads its version
    "fastapi",
    "jmespath",
    "mangum",
    "opentelemetry",  # its context API alone: FastAPI's hooks
    "prometheus_client",  # the metrics a finished request counts
    "pydantic",
    "pydantic_core",
    "python_multipart",  # Starlette's request module loads it wherever it is installed
    "sniffio",
    "starlette",
    "typing_extensions",
    "typing_inspection",
}
MUST_NOT_LOAD = {"aws_xray_sdk", "boto3", "jinja2", "onnx", "onnxruntime", "tensorflow", "torch"}
MUST_NOT_LOAD |= {"numpy", "tokenizers", "transformers", "uvicorn"}
# Settings are read by their own model (textgen.settings); the test install still has it.
MUST_NOT_LOAD |= {"pydantic_settings"}
# The project's own modules that join with the routes of the OpenAI-style and Batch APIs, on the
# first request that needs them (handlers.later_routes), and the model's tokenizer module and the
# step engine (numpy), which load with the model.
OWN_MUST_NOT_LOAD = {
    "handlers.batch_api.batches",
    "handlers.batch_api.routes",
    "handlers.openai_api.protocol",
    "handlers.openai_api.routes",
    "handlers.openai_api.serving",
    "textgen.backends.tokenizer",
    "textgen.engine.sampling",
    "textgen.engine.step_engine",
}

LOADED_MODULES = """
import json, sys
before = set(sys.modules)
import handlers.lambda_function
loaded = set(sys.modules) - before
names = {name.split(".")[0] for name in loaded}
own = {"handlers", "textgen", "tests"}
print(json.dumps({
    "packages": sorted(
        n for n in names - own - set(sys.stdlib_module_names) if not n.startswith("_")
    ),
    "own": sorted(n for n in loaded if n.split(".")[0] in own),
    "pydantic_v1": "pydantic.v1" in loaded,
}))
"""

IMPORT_HANDLER = """
import json, sys
import handlers.lambda_function as module
print(json.dumps({"xray": "aws_xray_sdk" in sys.modules}))
"""


@pytest.mark.parametrize(
    ("environ", "traced"),
    [
        ({}, False),  # not on Lambda
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "0"}, True),
    ],
)
def test_tracing_follows_powertools_rules(environ: dict[str, str], traced: bool) -> None:
    assert tracing_enabled(environ) is traced


@pytest.mark.slow
@pytest.mark.parametrize("on_lambda", [False, True])
def test_the_handler_imports_the_xray_sdk_only_where_it_traces(on_lambda: bool) -> None:
    unset = {"AWS_SAM_LOCAL": "", "AWS_CHALICE_CLI_MODE": "", "POWERTOOLS_TRACE_DISABLED": "false"}
    environ = {**unset, "LAMBDA_TASK_ROOT": "/var/task" if on_lambda else ""}

    loaded = fresh_python(IMPORT_HANDLER, env=environ)

    # Traced on Lambda (the live check: the SDK is seen when it is there); not elsewhere.
    assert loaded == {"xray": on_lambda}


# As template.yaml configures the function: the Batch API on S3 and SQS (its clients are made
# when it is first called).
BATCH_ON_AWS = {"BATCH_BUCKET": "batches", "BATCH_QUEUE_URL": "https://sqs.invalid/1/q"}


@pytest.mark.slow
@pytest.mark.parametrize("batch_env", [{}, BATCH_ON_AWS], ids=["local", "batch-api-on-aws"])
def test_the_handler_import_loads_only_what_the_first_request_needs(
    store_dir: Path, batch_env: dict[str, str]
) -> None:
    unset = {"PRELOAD_MODELS": "", "LAMBDA_TASK_ROOT": "", "CPU_RUNTIME": ""}
    env = {**unset, "MODEL_STORE": str(store_dir), **batch_env}
    modules = fresh_python(LOADED_MODULES, env=env)
    loaded, own = set(modules["packages"]), set(modules["own"])

    assert loaded <= MAY_LOAD, sorted(loaded - MAY_LOAD)
    assert not loaded & MUST_NOT_LOAD
    assert {"fastapi", "mangum", "pydantic"} <= loaded  # live check: the list is what it reads
    assert not own & OWN_MUST_NOT_LOAD, sorted(own & OWN_MUST_NOT_LOAD)
    assert {"handlers.routes", "handlers.factory"} <= own
    # FastAPI imports it (15 ms) to vet a route's response model: the routes declare none.
    assert modules["pydantic_v1"] is False


# Whether the step engine (numpy) was loaded when the preload thread started.
ENGINE_AT_PRELOAD_START = """
import json, sys, threading
seen = []
start = threading.Thread.start
def recorded(self):
    if self.name == "textgen-preload":
        seen.append("textgen.engine.step_engine" in sys.modules)
    start(self)
threading.Thread.start = recorded
import handlers.warm_start as warm_start
warm_start.preloading.join()
print(json.dumps(seen))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("preload", "engine_first"), [("absent-model", True), ("", False)])
def test_a_preload_finds_the_step_engine_imported_before_its_thread_starts(
    store_dir: Path, preload: str, engine_first: bool
) -> None:
    # Imported on the thread, beside the web stack's imports, it held back the session's
    # creation. Without a model to preload, it is not imported at all (the live check). A model
    # the store does not hold fails to load on the thread (logged), after the check.
    env = {"PRELOAD_MODELS": preload, "MODEL_STORE": str(store_dir), "CPU_RUNTIME": ""}

    assert fresh_python(ENGINE_AT_PRELOAD_START, env=env) == [engine_first]


COLLECTIONS = """
import gc, importlib, json, sys
during = []  # collections once the project's modules import (those before are not its own)
def count(phase, info):
    if phase == "start" and "textgen" in sys.modules:
        during.append(info["generation"])
gc.callbacks.append(count)
frozen_at_start = gc.get_freeze_count()  # Python 3.12 starts with a few hundred frozen
importlib.import_module(sys.argv[1])
imported = len(during)
made = [[] for _ in range(100_000)]  # allocations after the import
print(json.dumps({
    "during_import": imported,
    "after_import": len(during) - imported,
    "enabled": gc.isenabled(),
    "frozen": gc.get_freeze_count() - frozen_at_start,
}))
"""


def test_the_collector_waits_for_the_imports_then_skips_what_they_made() -> None:
    found = fresh_python(COLLECTIONS, "handlers.lambda_function")
    # The app's modules without the Lambda entry point: the collector runs as they import.
    control = fresh_python(COLLECTIONS, "handlers.factory")

    assert found["during_import"] == 0
    assert control["during_import"] > 0  # live check: the probe sees collections
    assert found["enabled"] and found["after_import"] > 0  # on again after the import
    assert found["frozen"] > 10_000 and control["frozen"] == 0  # the imports' objects


# The app's OpenAPI document and whether FastAPI's own OpenAPI models were built by the import
# (argv[1]: what is imported first; the app is made on the handler's service either way).
OPENAPI_MODELS = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
from fastapi.openapi.models import OpenAPI, Info
from pydantic import BaseModel
from handlers.schemas import GenerateRequestBody
built_by_import = {"OpenAPI": OpenAPI.__pydantic_complete__, "Info": Info.__pydantic_complete__}
from handlers.lambda_function import app
document = json.dumps(app.openapi(), sort_keys=True)
print(json.dumps({
    "built_by_import": built_by_import,
    "built_after_document": OpenAPI.__pydantic_complete__,
    "own_models_built": GenerateRequestBody.__pydantic_complete__,
    "base_config": dict(BaseModel.model_config),
    "document": document,
}))
"""


@pytest.mark.slow
def test_fastapis_openapi_models_are_built_on_first_use_and_the_document_is_the_same(
    store_dir: Path,
) -> None:
    env = {"PRELOAD_MODELS": "", "MODEL_STORE": str(store_dir), "CPU_RUNTIME": ""}
    deferred = fresh_python(OPENAPI_MODELS, "handlers.lambda_function", env=env)
    # Live check: FastAPI imported before the handler builds them at its import.
    control = fresh_python(OPENAPI_MODELS, "fastapi", env=env)

    assert deferred["built_by_import"] == {"OpenAPI": False, "Info": False}
    assert control["built_by_import"] == {"OpenAPI": True, "Info": True}
    assert deferred["built_after_document"] is True
    # The service's own models are built as they are defined; pydantic's default is back.
    assert deferred["own_models_built"] is True
    assert deferred["base_config"] == control["base_config"] == {}
    assert deferred["document"] == control["document"]
    assert len(deferred["document"]) > 10_000  # the whole document: every route's schemas
