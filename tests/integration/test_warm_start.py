"""A cold start loads PRELOAD_MODELS on a thread of its own while the rest imports
(handlers/warm_start.py): the first request for the model waits for that load and gets its
answer (a bad request meanwhile its 4xx, as on a warm instance); a preload that fails leaves the
service healthy, the failure logged; with provisioned concurrency (Lambda freezes the environment
after Init) the import waits for the load. With PRELOAD_SOLE_MODEL (the Lambda image's default)
and no PRELOAD_MODELS, a store holding one model has that one preloaded, a store of several none."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.fresh_process import fresh_python
from textgen.families import Framework
from textgen.service import GenerationService
from textgen.settings import Settings
from textgen.store import open_store

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
    unset = {
        "PRELOAD_MODELS": "",
        "PRELOAD_SOLE_MODEL": "",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "",
        "LAMBDA_TASK_ROOT": "",
    }
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


@pytest.fixture(scope="module")
def sole_model_store(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding gpt2-test and nothing else."""
    root = tmp_path_factory.mktemp("sole")
    shutil.copytree(store_dir / "gpt2-test", root / "gpt2-test")
    return root


@pytest.mark.parametrize("sole_model", ["true", "false"])
def test_a_store_holding_one_model_has_it_preloaded_unnamed(
    sole_model_store: Path, sole_model: str
) -> None:
    found = cold_start(sole_model_store, PRELOAD_SOLE_MODEL=sole_model)

    assert found["status"] == 200
    assert found["loaded"] == ["gpt2-test"]
    preloaded = sole_model == "true"  # off, the first request loads it (the check can fail)
    assert found["body"]["timing"]["model_loaded"] is not preloaded
    assert found["loaded_at_import"] == []  # the listing and the load went on after the import


def test_a_store_of_several_models_has_none_preloaded_unnamed(store_dir: Path) -> None:
    found = cold_start(store_dir, PRELOAD_SOLE_MODEL="true")

    assert found["status"] == 200
    assert found["loaded"] == ["gpt2-test"]  # the request's own, and only it
    assert found["body"]["timing"]["model_loaded"] is True


def sole_model_service(store: Path | str, **settings: Any) -> GenerationService:
    given = Settings(model_store=str(store), preload_sole_model=True, **settings)
    return GenerationService(given, open_store(given.model_store, given))


def test_named_models_are_preloaded_instead_of_the_sole_one(sole_model_store: Path) -> None:
    named = [("gpt2-other", Framework.TENSORFLOW)]

    assert sole_model_service(sole_model_store).models_to_preload() == [
        ("gpt2-test", Framework.PYTORCH)
    ]
    assert sole_model_service(sole_model_store, preload_models=named).models_to_preload() == named


def test_a_store_that_cannot_be_listed_preloads_nothing_and_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = sole_model_service(tmp_path / "no-such-store")

    with caplog.at_level(logging.ERROR, logger="textgen.service"):
        service.preload_in_background().join(timeout=60)

    assert service.loaded_models() == []
    assert "listing the store's models to preload failed" in caplog.text
