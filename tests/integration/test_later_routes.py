"""The OpenAI-style and Batch API routes join the app when first wanted (handlers.later_routes):
a server without a lifespan (Mangum, on Lambda) serves the seed routes without them, and every
other request, the OpenAPI document and a server's start see every route."""

from __future__ import annotations

from fastapi.testclient import TestClient

from handlers.factory import create_app
from textgen.settings import Settings

LATER_PATHS = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/files", "/v1/batches"}
LATER_ROUTERS = 2  # the OpenAI-style API's and the Batch API's


def test_the_seed_routes_answer_without_them_and_a_v1_request_adds_them(
    settings: Settings,
) -> None:
    app = create_app(settings)
    client = TestClient(app)  # no lifespan, as under Mangum
    at_first = len(app.router.routes)

    seed = client.post("/gpt2_model", json={"model_name": "gpt2-test", "prompts": ["Hi"]})
    health = client.get("/health")

    assert seed.status_code == 200, seed.text
    assert health.status_code == 200
    assert len(app.router.routes) == at_first
    assert getattr(app.state, "batch_api", None) is None

    models = client.get("/v1/models")

    assert models.status_code == 200, models.text
    assert {m["id"] for m in models.json()["data"]} >= {"gpt2-test", "llama-test"}
    assert len(app.router.routes) == at_first + LATER_ROUTERS  # the live check: counted
    assert app.state.batch_api is not None


def test_a_first_request_answers_as_it_would_with_every_route_there(settings: Settings) -> None:
    wrong_method = TestClient(create_app(settings)).get("/v1/completions")
    two_routes = TestClient(create_app(settings)).delete("/v1/batches")
    nowhere = TestClient(create_app(settings)).get("/no/such/path")
    batches = TestClient(create_app(settings)).get("/v1/batches")

    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    assert two_routes.status_code == 405
    assert two_routes.headers["allow"] == "GET, POST"  # both routes of the path
    assert nowhere.status_code == 404
    assert nowhere.json()["error"]["type"] == "http_error"
    assert batches.status_code == 200, batches.text
    assert batches.json()["data"] == []


def test_a_wrong_method_on_a_seed_route_names_the_allowed_one(client: TestClient) -> None:
    response = client.get("/gpt2_model")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_the_openapi_document_lists_every_route_before_any_was_used(settings: Settings) -> None:
    app = create_app(settings)

    document = TestClient(app).get("/openapi.json").json()

    assert set(document["paths"]) >= LATER_PATHS | {"/gpt2_model", "/llama_model", "/health"}
    assert "OpenAIError" in document["components"]["schemas"]


def test_a_server_with_a_lifespan_serves_every_route_from_its_start(settings: Settings) -> None:
    app = create_app(settings)
    at_first = len(app.router.routes)

    with TestClient(app) as client:  # the lifespan runs, as under uvicorn
        assert len(app.router.routes) == at_first + LATER_ROUTERS
        assert client.get("/v1/models").status_code == 200
