"""Sampling fields through HTTP, in both call shapes: seeds reproduce, stop strings cut, greedy
stays the default, and the original call shape takes them from the query string."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

ENDPOINTS = [("/gpt2_model", "gpt2-test"), ("/llama_model", "llama-test")]


def texts(client: TestClient, path: str, body: dict[str, Any]) -> list[str]:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return [r["generated_text"] for r in response.json()["results"]]


@pytest.mark.parametrize(("path", "model"), ENDPOINTS)
def test_a_seed_reproduces_and_another_seed_differs(
    client: TestClient, path: str, model: str
) -> None:
    body = {"model_name": model, "prompts": ["Hello", "Hello"], "max_tokens": 12}
    seeded = {**body, "temperature": 1.0, "top_k": 50, "seed": 5}

    first, again = texts(client, path, seeded), texts(client, path, seeded)
    other = texts(client, path, {**seeded, "seed": 6})
    greedy = texts(client, path, body)

    assert first == again
    assert first != other
    assert first[0] != first[1]  # each prompt of a request draws on its own
    assert greedy[0] == greedy[1] and greedy != first


@pytest.mark.parametrize(("path", "model"), ENDPOINTS)
def test_negative_seeds_reproduce_and_name_streams_of_their_own(
    client: TestClient, path: str, model: str
) -> None:
    # OpenAI's API takes any signed 64-bit seed.
    body = {"model_name": model, "prompts": ["Hello"], "max_tokens": 12, "temperature": 1.0}
    seeds = [-5, 5, -(2**63), 2**63 - 1]
    first = [texts(client, path, {**body, "seed": seed}) for seed in seeds]
    again = [texts(client, path, {**body, "seed": seed}) for seed in seeds]

    assert first == again
    assert len({text for (text,) in first}) == len(seeds)  # live check: no two seeds alike


@pytest.mark.parametrize(("path", "model"), ENDPOINTS)
def test_stop_strings_in_both_call_shapes(client: TestClient, path: str, model: str) -> None:
    body = {"model_name": model, "prompts": ["The weather today is"], "max_tokens": 16}
    (free,) = texts(client, path, body)
    stop = free[4:7]
    as_object = client.post(path, json={**body, "stop": [stop, "never there"]}).json()
    # The query string gives a list by repeating the field (stop=...&stop=...): each one counts.
    query: dict[str, Any] = {"model_name": model, "max_tokens": 16, "stop": [stop, "never there"]}
    as_original = client.post(path, params=query, json=body["prompts"]).json()

    (result,) = as_object["results"]
    assert result["finish_reason"] == "stop"
    assert result["generated_text"] == free[: free.index(stop)]
    assert as_original["results"] == as_object["results"]


def test_health_reports_each_loaded_models_engine(client: TestClient) -> None:
    client.post("/gpt2_model", json={"model_name": "gpt2-test", "prompts": ["Hi"], "max_tokens": 3})

    engines = client.get("/health").json()["engines"]

    assert engines["gpt2-test:pt"]["running_sequences"] == 0
    assert engines["gpt2-test:pt"]["queued_requests"] == 0
    assert engines["gpt2-test:pt"]["steps_per_second"] > 0


def test_a_service_shutting_down_refuses_new_requests_with_503(settings: Any) -> None:
    from handlers.factory import create_app

    with TestClient(create_app(settings)) as fresh:
        fresh.app.state.service.begin_shutdown()  # type: ignore[attr-defined]
        response = fresh.post(
            "/gpt2_model", json={"model_name": "gpt2-test", "prompts": ["Hi"], "max_tokens": 2}
        )
        health = fresh.get("/health")

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "shutting_down"
    assert health.status_code == 503
    assert health.json()["status"] == "shutting_down"
