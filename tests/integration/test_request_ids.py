"""Every response carries an `x-request-id`: the caller's when valid, else the Lambda invocation's
on Lambda, else a new one; the same id stands in the request's log lines and in OpenAI-style
responses' ids."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from handlers.observability import SERVICE
from handlers.request_ids import request_id_for

GENERATED = re.compile(r"[0-9a-f]{32}")
REQUEST = {"model_name": "gpt2-test", "prompts": ["Hello"], "max_tokens": 2}


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_callers_valid_id_is_answered_and_logged(client: TestClient) -> None:
    records = Records()
    service_logger = logging.getLogger(SERVICE)  # Powertools' logger: JSON lines on stdout
    service_logger.addHandler(records)
    try:
        sent = {"x-request-id": "trace-42.a:b"}
        answer = client.post("/gpt2_model", json=REQUEST, headers=sent)
        other = client.post("/gpt2_model", json=REQUEST)
    finally:
        service_logger.removeHandler(records)

    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "trace-42.a:b"
    generated = [r for r in records.records if r.getMessage() == "generated"]
    # Each request's log line carries its own id (live check: the other request's differs).
    assert [getattr(r, "request_id", None) for r in generated] == [
        "trace-42.a:b",
        other.headers["x-request-id"],
    ]


@pytest.mark.parametrize(
    "sent", [None, "", "x" * 129, "has space", "semi;colon", "-leading-dash", 'quo"te']
)
def test_without_a_valid_id_one_is_made(client: TestClient, sent: str | None) -> None:
    headers = {} if sent is None else {"x-request-id": sent}
    first = client.get("/health", headers=headers)
    second = client.get("/health", headers=headers)

    assert GENERATED.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_refusals_carry_the_id_too(client: TestClient) -> None:
    refused = client.post(
        "/gpt2_model", json={**REQUEST, "prompts": []}, headers={"x-request-id": "r1"}
    )
    missing = client.post(
        "/v1/completions", json={"model": "nope", "prompt": "x"}, headers={"x-request-id": "r2"}
    )

    assert (refused.status_code, refused.headers["x-request-id"]) == (422, "r1")
    assert (missing.status_code, missing.headers["x-request-id"]) == (404, "r2")


def test_openai_responses_are_named_by_the_request_id(client: TestClient) -> None:
    completion = client.post(
        "/v1/completions",
        json={"model": "gpt2-test", "prompt": "Hi", "max_tokens": 2},
        headers={"x-request-id": "abc123"},
    )
    chat = client.post(
        "/v1/chat/completions",
        json={
            "model": "llama-chat-test",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
        },
    )

    assert completion.json()["id"] == "cmpl-abc123"
    assert chat.json()["id"] == f"chatcmpl-{chat.headers['x-request-id']}"


def test_the_rules_for_an_id() -> None:
    class Context:
        aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"

    assert request_id_for("ok-1") == "ok-1"
    assert request_id_for("bad id", Context()) == Context.aws_request_id
    assert GENERATED.fullmatch(request_id_for(None))
    assert request_id_for(None) != request_id_for(None)
