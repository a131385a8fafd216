"""Both endpoints through HTTP, in both call shapes, on tiny models built for the tests."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from transformers import AutoModelForCausalLM, AutoTokenizer

from handlers.factory import create_app
from handlers.routes import router
from tests.support.models import set_eos
from textgen.settings import Settings

ENDPOINTS = [("/gpt2_model", "gpt2-test", "gpt2"), ("/llama_model", "llama-test", "llama")]
PROMPTS = ["Hello, my name is", "The capital of France is a city where people"]


@pytest.mark.parametrize(("path", "model", "family"), ENDPOINTS)
def test_object_body_gives_one_result_per_prompt(
    client: TestClient, path: str, model: str, family: str
) -> None:
    response = client.post(path, json={"model_name": model, "prompts": PROMPTS, "max_tokens": 7})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["family"], body["framework"]) == (model, family, "pt")
    assert body["task"] == "text-generation"
    assert len(body["results"]) == len(PROMPTS)
    # These tiny models never produce their end token this early: every result runs to length.
    assert [r["finish_reason"] for r in body["results"]] == ["length"] * len(PROMPTS)
    assert [r["generated_tokens"] for r in body["results"]] == [7] * len(PROMPTS)
    for result in body["results"]:
        assert result["generated_text"]
        assert not result["generated_text"].startswith(PROMPTS[0])
    tokens = sum(r["generated_tokens"] for r in body["results"])
    seconds = body["timing"]["generate_seconds"]
    assert body["throughput"]["tokens_per_second"] == pytest.approx(tokens / seconds)
    assert body["throughput"]["iterations_per_second"] == pytest.approx(len(PROMPTS) / seconds)


@pytest.mark.parametrize(("path", "model", "family"), ENDPOINTS)
def test_original_call_shape_matches_object_body(
    client: TestClient, path: str, model: str, family: str
) -> None:
    as_object = client.post(path, json={"model_name": model, "prompts": PROMPTS, "max_tokens": 5})
    as_original = client.post(
        path,
        params={"model_name": model, "task": "text-generation", "framework": "pt", "max_tokens": 5},
        json=PROMPTS,
    )

    assert as_original.status_code == 200, as_original.text
    assert as_original.json()["family"] == family
    assert as_original.json()["results"] == as_object.json()["results"]


def test_max_tokens_defaults_to_the_configured_default(client: TestClient) -> None:
    response = client.post("/gpt2_model", json={"model_name": "gpt2-test", "prompts": ["Hi"]})

    result = response.json()["results"][0]
    assert (result["finish_reason"], result["generated_tokens"]) == ("length", 12)


@pytest.mark.parametrize(
    ("path", "model", "found"),
    [("/gpt2_model", "llama-test", "llama"), ("/llama_model", "gpt2-test", "gpt2")],
)
def test_wrong_family_is_422_naming_the_family(
    client: TestClient, path: str, model: str, found: str
) -> None:
    response = client.post(path, json={"model_name": model, "prompts": ["Hi"]})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "wrong_model_family"
    assert f"is a {found} model" in error["message"]


def test_second_request_loads_nothing(settings: Settings) -> None:
    with TestClient(create_app(settings)) as fresh:
        request = {"model_name": "gpt2-test", "prompts": ["Once upon a time"], "max_tokens": 3}
        first = fresh.post("/gpt2_model", json=request).json()
        second = fresh.post("/gpt2_model", json=request).json()
        loaded = fresh.get("/health").json()["loaded_models"]

    assert first["timing"]["model_loaded"] is True
    assert first["timing"]["load_seconds"] > 0
    assert second["timing"]["model_loaded"] is False
    assert second["timing"]["load_seconds"] == 0
    assert second["results"] == first["results"]
    assert loaded == ["gpt2-test:pt"]


def test_least_recently_used_model_is_evicted(settings: Settings) -> None:
    small = settings.model_copy(update={"max_loaded_models": 2})
    with TestClient(create_app(small)) as fresh:

        def loaded(model: str, path: str = "/gpt2_model") -> bool:
            body = {"model_name": model, "prompts": ["Hi"], "max_tokens": 1}
            response = fresh.post(path, json=body)
            assert response.status_code == 200, response.text
            return bool(response.json()["timing"]["model_loaded"])

        assert loaded("gpt2-test")
        assert loaded("llama-test", "/llama_model")
        assert not loaded("gpt2-test")  # now the most recently used
        assert loaded("gpt2-other-seed")  # evicts llama-test, the least recently used
        assert not loaded("gpt2-test")
        assert loaded("llama-test", "/llama_model")
        health = fresh.get("/health").json()

    assert sorted(health["loaded_models"]) == ["gpt2-test:pt", "llama-test:pt"]


def test_finish_reason_stop_when_the_model_ends(
    store_dir: Path, tmp_path: Path, settings: Settings
) -> None:
    # Copy the model, declaring the token it greedily produces third as its end of sequence.
    store = tmp_path / "store"
    shutil.copytree(store_dir / "gpt2-test", store / "gpt2-stops")
    tokenizer = AutoTokenizer.from_pretrained(store / "gpt2-stops")
    model = AutoModelForCausalLM.from_pretrained(store / "gpt2-stops")
    prompt_ids = tokenizer("Hello", return_tensors="pt")
    greedy = model.generate(**prompt_ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    new_ids = greedy[0, prompt_ids["input_ids"].shape[1] :].tolist()
    assert new_ids[2] not in new_ids[:2], "pick a prompt whose third token is new"
    set_eos(store / "gpt2-stops", new_ids[2])

    with TestClient(create_app(settings.model_copy(update={"model_store": str(store)}))) as fresh:
        stopped = fresh.post(
            "/gpt2_model", json={"model_name": "gpt2-stops", "prompts": ["Hello"], "max_tokens": 6}
        ).json()["results"][0]

    assert stopped["finish_reason"] == "stop"
    assert stopped["generated_tokens"] == 2
    assert stopped["generated_text"] == tokenizer.decode(new_ids[:2])


def test_health_and_models(client: TestClient) -> None:
    health = client.get("/health")
    models = client.get("/models")

    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    listed = {m["name"]: m for m in models.json()["models"]}
    assert listed["gpt2-test"] == {"name": "gpt2-test", "family": "gpt2", "frameworks": ["pt"]}
    assert listed["llama-test"]["family"] == "llama"
    assert listed["bert-test"]["frameworks"] == []
    assert listed["broken-test"]["family"] == "unknown"


def test_openapi_documents_both_call_shapes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schema = spec["paths"]["/gpt2_model"]["post"]["requestBody"]["content"]["application/json"]

    shapes = schema["schema"]["anyOf"]
    assert {s.get("type") for s in shapes} == {"object", "array"}


def test_error_bodies_are_documented_by_reference_not_built_per_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(spec)))
    responses = {
        path: spec["paths"][path][method]["responses"]
        for path, method in (("/llama_model", "post"), ("/v1/completions", "post"))
    }

    # Every name referenced is among the components (the error bodies are added to them).
    assert refs <= spec["components"]["schemas"].keys()
    assert {"ErrorResponse", "OpenAIError"} <= refs
    error_body = responses["/llama_model"]["400"]["content"]["application/json"]["schema"]
    assert error_body == {"$ref": "#/components/schemas/ErrorResponse"}
    assert responses["/v1/completions"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OpenAIError"
    }
    assert responses["/llama_model"]["400"]["description"] == "Bad Request"
    # Importing the routes built no pydantic field for an error status (FastAPI does, per route
    # and status, for {"model": ...}): the seed routes' only response field is their success's.
    route = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == "/llama_model")
    assert route.response_fields == {}
