"""Every bad input gets a clear 4xx JSON error, and the service stays healthy afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

GOOD: dict[str, Any] = {"model_name": "gpt2-test", "prompts": ["Hello"], "max_tokens": 2}


def with_(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def without(field: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != field}


# (case id, request keyword arguments, status, error type, words the message must hold)
CASES: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("empty prompts", {"json": with_(prompts=[])}, 422, "invalid_request", "at least one"),
    ("empty prompt", {"json": with_(prompts=["ok", ""])}, 422, "invalid_request", "prompts[1]"),
    ("non-string prompt", {"json": with_(prompts=["ok", 3])}, 422, "validation_error", "prompts.1"),
    ("prompts not a list", {"json": with_(prompts="Hello")}, 422, "validation_error", "prompts"),
    ("too many prompts", {"json": with_(prompts=["a"] * 9)}, 422, "invalid_request", "limit of 8"),
    (
        "prompt too long",
        {"json": with_(prompts=["x" * 501])},
        422,
        "invalid_request",
        "limit of 500",
    ),
    (
        "prompt over the context",
        {"json": with_(prompts=["word " * 100], max_tokens=60)},
        422,
        "invalid_request",
        "context of 128 tokens",
    ),
    ("max_tokens zero", {"json": with_(max_tokens=0)}, 422, "invalid_request", "between 1 and 64"),
    (
        "max_tokens over cap",
        {"json": with_(max_tokens=65)},
        422,
        "invalid_request",
        "between 1 and 64",
    ),
    (
        "max_tokens not a number",
        {"json": with_(max_tokens="many")},
        422,
        "validation_error",
        "max_tokens",
    ),
    (
        "unknown task",
        {"json": with_(task="summarization")},
        422,
        "invalid_request",
        "text-generation",
    ),
    ("unknown framework", {"json": with_(framework="jax")}, 422, "invalid_request", "pt, tf"),
    ("missing model_name", {"json": without("model_name")}, 422, "validation_error", "model_name"),
    ("missing prompts", {"json": without("prompts")}, 422, "validation_error", "prompts"),
    ("unknown field", {"json": with_(max_token=5)}, 422, "validation_error", "max_token"),
    (
        "malformed JSON",
        {"content": b'{"model_name": "gpt2-test", '},
        400,
        "malformed_body",
        "not valid JSON",
    ),
    ("not UTF-8", {"content": b"\xff\xfe{}"}, 400, "malformed_body", "not valid UTF-8"),
    ("body a number", {"json": 42}, 400, "malformed_body", "JSON object"),
    ("empty body", {"content": b""}, 422, "validation_error", "model_name"),
    (
        "field in query and body",
        {"json": GOOD, "params": {"max_tokens": "3"}},
        400,
        "malformed_body",
        "max_tokens",
    ),
    (
        "original shape, bad max_tokens",
        {"json": ["Hello"], "params": {"model_name": "gpt2-test", "max_tokens": "-1"}},
        422,
        "invalid_request",
        "max_tokens",
    ),
    (
        "original shape, no model_name",
        {"json": ["Hello"], "params": {"max_tokens": "2"}},
        422,
        "validation_error",
        "model_name",
    ),
    ("unknown model", {"json": with_(model_name="nope")}, 404, "model_not_found", "'nope'"),
    (
        "path traversal",
        {"json": with_(model_name="../gpt2-test")},
        400,
        "invalid_model_name",
        "'..'",
    ),
    ("absolute path", {"json": with_(model_name="/etc")}, 400, "invalid_model_name", "path"),
    ("nested path", {"json": with_(model_name="a/b")}, 400, "invalid_model_name", "path"),
    ("dot-dot name", {"json": with_(model_name="x..y")}, 400, "invalid_model_name", "'..'"),
    (
        "not a supported family",
        {"json": with_(model_name="bert-test")},
        422,
        "wrong_model_family",
        "bert",
    ),
    (
        "unreadable config",
        {"json": with_(model_name="broken-test")},
        422,
        "unsupported_model",
        "config.json",
    ),
    (
        "tf without an export",
        {"json": with_(framework="tf")},
        422,
        "framework_unavailable",
        "textgen export-tf",
    ),
    ("body too large", {"json": with_(prompts=["x" * 70_000])}, 413, "body_too_large", "limit"),
    ("temperature too high", {"json": with_(temperature=3)}, 422, "invalid_request", "temperature"),
    (
        "negative temperature",
        {"json": with_(temperature=-1)},
        422,
        "invalid_request",
        "temperature",
    ),
    ("top_p zero", {"json": with_(top_p=0)}, 422, "invalid_request", "top_p"),
    ("top_p over one", {"json": with_(top_p=1.5)}, 422, "invalid_request", "top_p"),
    ("negative top_k", {"json": with_(top_k=-5)}, 422, "invalid_request", "top_k"),
    (
        "repetition_penalty zero",
        {"json": with_(repetition_penalty=0)},
        422,
        "invalid_request",
        "repetition_penalty",
    ),
    ("seed too small", {"json": with_(seed=-(2**63) - 1)}, 422, "invalid_request", "seed"),
    ("seed too large", {"json": with_(seed=2**64)}, 422, "invalid_request", "seed"),
    ("seed not a number", {"json": with_(seed="lucky")}, 422, "validation_error", "seed"),
    ("empty stop string", {"json": with_(stop=[""])}, 422, "invalid_request", "stop"),
    ("five stop strings", {"json": with_(stop=list("abcde"))}, 422, "invalid_request", "stop"),
    ("stop not strings", {"json": with_(stop=[1, 2])}, 422, "validation_error", "stop"),
    # JSON values must have their field's type; only the query string's text is read as one.
    ("max_tokens a string", {"json": with_(max_tokens="2")}, 422, "validation_error", "max_tokens"),
    ("max_tokens true", {"json": with_(max_tokens=True)}, 422, "validation_error", "max_tokens"),
    ("temperature a string", {"json": with_(temperature="0")}, 422, "validation_error", "temper"),
    ("seed a decimal", {"json": with_(seed=1.0)}, 422, "validation_error", "seed"),
    ("model_name a number", {"json": with_(model_name=7)}, 422, "validation_error", "model_name"),
    (
        "original shape, max_tokens twice",
        {
            "json": ["Hello"],
            "params": [("model_name", "gpt2-test"), ("max_tokens", "2"), ("max_tokens", "3")],
        },
        422,
        "validation_error",
        "max_tokens",
    ),
    (
        "original shape, max_tokens not a number",
        {"json": ["Hello"], "params": {"model_name": "gpt2-test", "max_tokens": "many"}},
        422,
        "validation_error",
        "max_tokens",
    ),
    (
        "original shape, bad temperature",
        {"json": ["Hello"], "params": {"model_name": "gpt2-test", "temperature": "9"}},
        422,
        "invalid_request",
        "temperature",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "kind", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_a_clear_json_error(
    client: TestClient, kwargs: dict[str, Any], status: int, kind: str, words: str
) -> None:
    response = client.post("/gpt2_model", **kwargs)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == kind
    assert words in error["message"]
    # The service is still healthy and still generates.
    assert client.get("/health").json()["status"] == "ok"
    assert client.post("/gpt2_model", json=GOOD).status_code == 200


def test_without_max_tokens_a_long_prompt_gets_what_the_context_leaves(client: TestClient) -> None:
    """gpt2-test's context is 128 tokens; the default max_tokens (12) gives way to a prompt of
    121, where asking for 12 is refused."""
    prompt = "a " * 120  # 121 tokens: "a", 119 x " a", " "
    asked = client.post("/gpt2_model", json={**without("max_tokens"), "prompts": [prompt]})
    refused = client.post("/gpt2_model", json={**GOOD, "prompts": [prompt], "max_tokens": 12})

    assert asked.status_code == 200, asked.text
    result = asked.json()["results"][0]
    assert result["generated_tokens"] == 7 or result["finish_reason"] == "stop", result
    assert result["generated_tokens"] <= 7
    assert refused.status_code == 422 and "context of 128" in refused.json()["error"]["message"]


def test_model_names_never_reach_outside_the_store(client: TestClient, store_dir: Any) -> None:
    outside = store_dir.parent / "outside-model"
    outside.mkdir(exist_ok=True)
    (outside / "config.json").write_text('{"model_type": "gpt2"}')
    link = store_dir / "escape-link"
    link.symlink_to(outside)
    try:
        response = client.post("/gpt2_model", json=with_(model_name="escape-link"))
    finally:
        link.unlink()

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "model_not_found"


def test_unknown_route_is_json(client: TestClient) -> None:
    response = client.get("/nope")

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "http_error"


def test_wrong_method_is_json(client: TestClient) -> None:
    response = client.get("/gpt2_model")

    assert response.status_code == 405
    assert response.json()["error"]["type"] == "http_error"
