"""Hostile input on every route: names that try to leave the store, prompts no text should hold,
numbers out of any range, bodies built to exhaust a parser. Each gets a 4xx JSON error, the
service stays healthy, no file outside the store is opened and nothing is unpickled."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from handlers.factory import create_app
from textgen.settings import Settings

SEED = "/gpt2_model"
COMPLETIONS = "/v1/completions"
GOOD = {"model_name": "gpt2-test", "prompts": ["Hello"], "max_tokens": 2}
GOOD_V1 = {"model": "gpt2-test", "prompt": "Hello", "max_tokens": 2}
NEST = 100_000


def seed(**changes: Any) -> dict[str, Any]:
    return {"json": {**GOOD, **changes}}


def v1(**changes: Any) -> dict[str, Any]:
    return {"json": {**GOOD_V1, **changes}}


def raw(text: str | bytes) -> dict[str, Any]:
    body = text.encode() if isinstance(text, str) else text
    return {"content": body, "headers": {"content-type": "application/json"}}


LONE_SURROGATE = '{"model_name": "gpt2-test", "prompts": ["\\ud800"]}'
BAD_UTF8 = b'{"model": "gpt2-test", "prompt": "\xc3\x28"}'
NAN = '{"model_name": "gpt2-test", "prompts": ["a"], "temperature": NaN}'
INFINITY = '{"model": "gpt2-test", "prompt": "a", "top_p": Infinity}'
BOMB = "[" * NEST + "]" * NEST
BOMB_V1 = '{"prompt": ' + BOMB + "}"
TWICE = '{"model_name": "gpt2-test", "prompts": ["a"], "prompts": ["b"]}'
TWICE_V1 = '{"model": "gpt2-test", "prompt": "a", "model": "x"}'
NAME = "invalid_model_name"

# (case, method, path, request keyword arguments, status, error type or code)
CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("dot-dot name", "POST", SEED, seed(model_name="../outside-model"), 400, NAME),
    # Decoded, the slash makes another path: no route has it.
    ("encoded slash in a path", "GET", "/v1/models/..%2Foutside-model", {}, 404, "http_error"),
    ("encoded dot-dot", "GET", "/v1/models/%2E%2E", {}, 400, NAME),
    ("look-alike hyphen", "POST", SEED, seed(model_name="gpt2\u2010test"), 400, NAME),
    ("look-alike letter", "POST", COMPLETIONS, v1(model="gpt2-t\u0435st"), 400, NAME),
    ("very long name", "POST", SEED, seed(model_name="a" * 10_000), 400, NAME),
    ("long name in a path", "GET", "/v1/models/" + "b" * 5000, {}, 400, NAME),
    ("NUL in a name", "POST", COMPLETIONS, v1(model="gpt2-test\u0000"), 400, NAME),
    ("NUL in a prompt", "POST", SEED, seed(prompts=["a\u0000b"]), 422, "invalid_request"),
    ("escape in a prompt", "POST", COMPLETIONS, v1(prompt="\u001b[2J"), 400, "invalid_request"),
    ("lone surrogate", "POST", SEED, raw(LONE_SURROGATE), 422, "invalid_request"),
    ("invalid UTF-8", "POST", COMPLETIONS, raw(BAD_UTF8), 400, "malformed_body"),
    ("huge max_tokens", "POST", SEED, seed(max_tokens=10**30), 422, "invalid_request"),
    ("huge seed", "POST", COMPLETIONS, v1(seed=10**40), 400, "invalid_request"),
    ("huge temperature", "POST", SEED, seed(temperature=1e308), 422, "invalid_request"),
    ("NaN", "POST", SEED, raw(NAN), 400, "malformed_body"),
    ("Infinity", "POST", COMPLETIONS, raw(INFINITY), 400, "malformed_body"),
    ("nesting bomb", "POST", SEED, raw(BOMB), 400, "malformed_body"),
    ("nesting bomb, v1", "POST", COMPLETIONS, raw(BOMB_V1), 400, "malformed_body"),
    ("duplicate keys", "POST", SEED, raw(TWICE), 400, "malformed_body"),
    ("duplicate keys, v1", "POST", COMPLETIONS, raw(TWICE_V1), 400, "malformed_body"),
    ("query too long", "POST", f"{SEED}?q={'x' * 9000}", seed(), 414, "query_too_long"),
    (
        "headers too large",
        "POST",
        COMPLETIONS,
        {**v1(), "headers": {"x-pad": "y" * 20_000}},
        431,
        "headers_too_large",
    ),
]


@pytest.fixture(scope="module")
def hostile_client(store_dir: Path, settings: Settings) -> Iterator[TestClient]:
    roomy = settings.model_copy(update={"max_body_bytes": 4 * NEST + 1024})  # bombs get parsed
    with TestClient(create_app(roomy)) as client:
        yield client


@pytest.fixture
def watched_files(store_dir: Path) -> Iterator[list[str]]:
    """Every file opened and every class unpickled while a test runs (Python's audit events)."""
    outside = store_dir.parent / "outside-model"
    outside.mkdir(exist_ok=True)
    (outside / "config.json").write_text('{"model_type": "gpt2"}')
    events: list[str] = []
    watching = True

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not watching:
            return
        if event == "open" and isinstance(args[0], str) and "outside-model" in args[0]:
            events.append(f"open {args[0]}")
        elif event == "pickle.find_class":
            events.append(f"unpickle {args}")

    sys.addaudithook(hook)  # hooks cannot be removed: this one goes quiet after the test
    yield events
    watching = False


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "kind"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_hostile_input_is_a_clear_4xx_and_touches_nothing(
    hostile_client: TestClient,
    watched_files: list[str],
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    kind: str,
) -> None:
    response = hostile_client.request(method, path, **kwargs)

    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert (error.get("code") if "/v1/" in path else error["type"]) == kind, error
    assert watched_files == []
    assert hostile_client.get("/health").json()["status"] == "ok"
    assert hostile_client.post(SEED, json=GOOD).status_code == 200


def test_the_watch_sees_an_outside_open_when_there_is_one(
    watched_files: list[str], store_dir: Path
) -> None:
    # Live check of the audit hook above: a real open of the planted folder is recorded.
    (store_dir.parent / "outside-model" / "config.json").read_text()

    assert watched_files and "outside-model" in watched_files[0]
