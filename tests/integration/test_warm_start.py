"""A cold start loads PRELOAD_MODELS on a thread of its own while the rest imports
(handlers/warm_start.py): the first request for the model waits for that load and gets its
answer (a bad request meanwhile its 4xx, as on a warm instance); a preload that fails leaves the
service healthy, the failure logged; with provisioned concurrency (Lambda freezes the environment
after Init) the import waits for the load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.fresh_process import fresh_python

pytestmark = pytest.mark.slow

COLD_START = """
import json, sys
import handlers.lambda_function as module
from handlers.lambda_context import LocalLambdaContext
from handlers.warm_start import preloading, service
from tests.support.lambda_support import load_event
loaded_at_import = [name for name, _ in service.loaded_models()]
loading_at_import = preloading.is_alive()
context = LocalLambdaContext(remaining_ms=60_000)
bad = module.handler(load_event("rest-bad-request"), context)  # no prompts, while it loads
response = module.handler(load_event("http-gpt2-model"), context)
print(json.dumps({
    "bad_status": bad["statusCode"],
    "bad_type": json.loads(bad["body"])["error"]["type"],
    "status": response["statusCode"],
    "body": json.loads(response["body"]),
    "loaded_at_import": loaded_at_import,
    "loading_at_import": loading_at_import,
    "loaded": [name for name, _ in service.loaded_models()],
}))
"""


def cold_start(store: Path, **environ: str) -> Any:
    unset = {"PRELOAD_MODELS": "", "AWS_LAMBDA_INITIALIZATION_TYPE": "", "LAMBDA_TASK_ROOT": ""}
    return fresh_python(COLD_START, env={**unset, "MODEL_STORE": str(store), **environ})


def test_the_preloaded_model_answers_the_first_request(store_dir: Path) -> None:
    found = cold_start(store_dir, PRELOAD_MODELS="gpt2-test")

    assert found["status"] == 200
    assert found["body"]["results"][0]["generated_tokens"] == 5
    assert (found["bad_status"], found["bad_type"]) == (422, "invalid_request")  # as when warm
    assert found["loaded_at_import"] == []  # loading went on after the import...
    assert found["loaded"] == ["gpt2-test"]  # ...and the request used that load
    assert found["body"]["timing"]["model_loaded"] is False  # it did not load it again


def test_a_preload_that_fails_leaves_the_service_healthy(store_dir: Path) -> None:
    found = cold_start(store_dir, PRELOAD_MODELS="no-such-model")

    assert found["status"] == 200  # another model's request, loaded on demand
    assert found["loaded"] == ["gpt2-test"]
    assert found["body"]["timing"]["model_loaded"] is True


@pytest.mark.parametrize("initialization", ["provisioned-concurrency", "on-demand"])
def test_with_provisioned_concurrency_the_import_waits_for_the_load(
    store_dir: Path, initialization: str
) -> None:
    found = cold_start(
        store_dir, PRELOAD_MODELS="gpt2-test", AWS_LAMBDA_INITIALIZATION_TYPE=initialization
    )

    assert found["status"] == 200
    waited = initialization == "provisioned-concurrency"
    assert found["loading_at_import"] is not waited
    assert found["loaded_at_import"] == (["gpt2-test"] if waited else [])
