"""The Lambda handler, driven with events made by the SAM CLI (tests/events/generate.sh)."""

from __future__ import annotations

import base64
import gc
import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx2
import openai
import pytest

from handlers.lambda_context import LocalLambdaContext
from tests.support.lambda_support import load_event
from textgen.settings import get_settings


@pytest.fixture(scope="module")
def lambda_module(store_dir: Path) -> Iterator[ModuleType]:
    """handlers.lambda_function imported as Lambda imports it: configured by the environment."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODEL_STORE", str(store_dir))
        env.setenv("MAX_NEW_TOKENS_CAP", "64")
        env.setenv("DEFAULT_MAX_TOKENS", "16")
        env.setenv("POWERTOOLS_METRICS_NAMESPACE", "ServerlessTextgenTests")
        get_settings.cache_clear()
        import handlers.lambda_function
        import handlers.warm_start

        importlib.reload(handlers.warm_start)  # the service, made from this environment
        yield importlib.reload(handlers.lambda_function)
    get_settings.cache_clear()
    gc.unfreeze()  # what the import froze (handlers.cold_start) is this process' to collect again


def invoke(module: ModuleType, event_name: str, **context: Any) -> tuple[int, Any]:
    response = module.handler(load_event(event_name), LocalLambdaContext(**context))
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    content_type = {k.lower(): v for k, v in response["headers"].items()}.get("content-type", "")
    return response["statusCode"], json.loads(body) if "json" in content_type else body


@pytest.mark.parametrize(
    ("event", "prompts"),
    [("rest-gpt2-model", 2), ("http-gpt2-model", 1), ("function-url-gpt2-model", 1)],
)
def test_gpt2_model_through_every_event_source(
    lambda_module: ModuleType, event: str, prompts: int
) -> None:
    status, body = invoke(lambda_module, event)

    assert status == 200, body
    assert body["family"] == "gpt2"
    assert len(body["results"]) == prompts
    # The events ask for 5 tokens, and the tiny test models never end sooner.
    assert [(r["finish_reason"], r["generated_tokens"]) for r in body["results"]] == [
        ("length", 5)
    ] * prompts


def test_llama_model_with_the_original_call_shape(lambda_module: ModuleType) -> None:
    status, body = invoke(lambda_module, "rest-llama-model-original-shape")

    assert status == 200, body
    assert body["model_name"] == "llama-test"
    assert len(body["results"]) == 1


@pytest.mark.parametrize("event", ["rest-health", "http-health"])
def test_health(lambda_module: ModuleType, event: str) -> None:
    status, body = invoke(lambda_module, event)

    assert status == 200
    assert body["status"] == "ok"


def test_bad_request_is_a_4xx_json_error(lambda_module: ModuleType) -> None:
    status, body = invoke(lambda_module, "rest-bad-request")

    assert status == 422
    assert body["error"]["type"] == "invalid_request"


def test_docs_work_behind_the_stage_prefix(lambda_module: ModuleType) -> None:
    status, page = invoke(lambda_module, "rest-docs")

    assert status == 200
    assert "'/Prod/openapi.json'" in page or '"/Prod/openapi.json"' in page


def test_warm_invocations_reuse_the_loaded_model(lambda_module: ModuleType) -> None:
    invoke(lambda_module, "rest-gpt2-model")
    _, warm = invoke(lambda_module, "rest-gpt2-model")

    assert warm["timing"]["model_loaded"] is False


def test_generation_stops_in_time_to_answer(lambda_module: ModuleType) -> None:
    # Less time left than the safety margin: the answer comes back at once with what exists.
    status, body = invoke(lambda_module, "rest-deadline", remaining_ms=500)

    assert status == 200, body
    (result,) = body["results"]
    assert result["finish_reason"] == "time_limit"
    assert 1 <= result["generated_tokens"] < 64
    assert result["generated_text"]


def test_http_api_named_stage_in_the_path(lambda_module: ModuleType) -> None:
    # An HTTP API's named stage appears in rawPath and http.path (the SAM event uses $default-like
    # paths); the prefix is stripped for routing and kept as the root path.
    event = load_event("http-gpt2-model")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/Prod/gpt2_model"

    response = lambda_module.handler(event, LocalLambdaContext())

    assert response["statusCode"] == 200, response["body"]


def test_openai_completions_and_models_through_api_gateway(lambda_module: ModuleType) -> None:
    status, completion = invoke(lambda_module, "rest-v1-completions")
    models_status, models = invoke(lambda_module, "rest-v1-models")

    assert status == 200, completion
    assert completion["object"] == "text_completion"
    assert completion["usage"]["completion_tokens"] == 5
    assert models_status == 200
    assert "gpt2-test" in {m["id"] for m in models["data"]}


def test_openai_chat_through_api_gateway(lambda_module: ModuleType) -> None:
    status, chat = invoke(lambda_module, "rest-v1-chat-completions")

    assert status == 200, chat
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["role"] == "assistant"
    assert chat["usage"]["completion_tokens"] == 5


def test_a_stream_through_api_gateway_arrives_whole_and_the_sdk_parses_it(
    lambda_module: ModuleType,
) -> None:
    # The SDK's requests (httpx2 is its HTTP library) go through API Gateway's event shape to
    # the handler and back: API Gateway buffers, so the whole event stream arrives at once.
    def through_lambda(request: httpx2.Request) -> httpx2.Response:
        event = load_event("rest-v1-completions-stream")
        event["body"], event["isBase64Encoded"] = request.content.decode(), False
        response = lambda_module.handler(event, LocalLambdaContext())
        body = response["body"]
        if response.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        headers = {**response["headers"], **{"content-length": str(len(body.encode()))}}
        return httpx2.Response(response["statusCode"], headers=headers, content=body.encode())

    client = openai.OpenAI(
        base_url="https://example.execute-api.us-east-1.amazonaws.com/Prod/v1",
        api_key="unused",
        http_client=httpx2.Client(transport=httpx2.MockTransport(through_lambda)),
        max_retries=0,
    )
    request: Any = {"model": "gpt2-test", "prompt": "Stream me", "max_tokens": 5, "temperature": 0}
    chunks = list(client.completions.create(**request, stream=True))
    whole = client.completions.create(**request)

    assert len(chunks) == 5
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_on_lambda_the_invocations_id_joins_the_request(lambda_module: ModuleType) -> None:
    context = LocalLambdaContext(remaining_ms=60_000)
    plain = lambda_module.handler(load_event("rest-health"), context)
    event = load_event("rest-health")
    event["headers"] = {**event["headers"], "X-Request-Id": "from-the-caller"}
    event["multiValueHeaders"] = {**event["multiValueHeaders"], "X-Request-Id": ["from-the-caller"]}
    sent = lambda_module.handler(event, context)

    assert plain["headers"]["x-request-id"] == context.aws_request_id
    assert sent["headers"]["x-request-id"] == "from-the-caller"


def test_an_invocation_writes_the_metrics_names_of_its_request_in_one_line(
    lambda_module: ModuleType, capfd: pytest.CaptureFixture[str]
) -> None:
    invoke(lambda_module, "http-gpt2-model")  # loaded: the cold start's own line aside
    capfd.readouterr()
    status, body = invoke(lambda_module, "http-gpt2-model")
    lines = [json.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith('{"_aws"')]

    assert status == 200
    ours = [line for line in lines if "textgen_generation_tokens" in line]
    assert len(ours) == 1  # one line for the invocation, whatever the tokens
    line = ours[0]
    assert line["model_name"] == "gpt2-test"
    assert line["textgen_generation_tokens"] == [body["results"][0]["generated_tokens"]]
    names = {m["Name"] for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    # The names /metrics gives the same figures (Prometheus' counters add `_total`).
    assert {
        "textgen_prompt_tokens",
        "textgen_generation_tokens",
        "textgen_request_finished",
        "textgen_time_to_first_token_seconds",
        "textgen_e2e_request_latency_seconds",
        "textgen_queue_time_seconds",
    } <= names
