"""GET /metrics, scraped with prometheus-client's own parser after a known set of requests (both
families, streamed and not, refusals, a full queue's 429): every count exactly what was asked,
with a check that a wrong count is caught; and server processes sharing a multiprocess folder
counted together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from handlers.factory import create_app
from tests.support.fresh_process import fresh_python
from textgen.backends.tokenizer import ModelTokenizer
from textgen.settings import Settings

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
HISTOGRAMS = (
    "textgen_time_to_first_token_seconds",
    "textgen_inter_token_latency_seconds",
    "textgen_e2e_request_latency_seconds",
    "textgen_queue_time_seconds",
)


def scrape(client: TestClient) -> Samples:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def grown(before: Samples, after: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """How much each labelled sample of `name` grew (the counters are the process's)."""
    return {
        labels: value - before.get((sample, labels), 0.0)
        for (sample, labels), value in after.items()
        if sample == name and value != before.get((sample, labels), 0.0)
    }


@pytest.fixture
def app(engine_store: Path) -> Iterator[TestClient]:
    settings = Settings(model_store=str(engine_store), max_batch_size=1, max_queued_requests=1)
    with TestClient(create_app(settings)) as client:
        yield client


def until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_counts_are_what_was_asked(app: TestClient, engine_store: Path) -> None:
    before = scrape(app)
    answers: dict[str, Any] = {}
    # Both families, streamed and not, through both APIs.
    answers["gpt2"] = app.post(
        "/gpt2_model", json={"model_name": "gpt2-test", "prompts": ["Hello"], "max_tokens": 3}
    ).json()
    answers["llama"] = app.post(
        "/llama_model", json={"model_name": "llama-test", "prompts": ["Hi there"], "max_tokens": 4}
    ).json()
    streamed = app.post(
        "/v1/completions",
        json={
            "model": "gpt2-test",
            "prompt": "Once",
            "max_tokens": 5,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    chat = app.post(
        "/v1/chat/completions",
        json={"model": "llama-chat-test", "messages": [{"role": "user", "content": "Yo"}]}
        | {"max_tokens": 2},
    ).json()
    # Refusals: a bad request and an unknown model (never reach an engine).
    bad = app.post("/gpt2_model", json={"model_name": "gpt2-test", "prompts": []})
    unknown = app.post("/v1/completions", json={"model": "nope", "prompt": "x"})
    # A full queue: one request running, one waiting, the next turned away.
    long_request = {"model_name": "gpt2-slow", "prompts": ["Long"], "max_tokens": 300}
    results: list[Any] = []
    running = threading.Thread(
        target=lambda: results.append(app.post("/gpt2_model", json=long_request))
    )
    running.start()
    until(
        lambda: (
            app.get("/health").json()["engines"].get("gpt2-slow:pt", {}).get("running_sequences")
            == 1
        )
    )
    waiting = threading.Thread(
        target=lambda: results.append(app.post("/gpt2_model", json=long_request))
    )
    waiting.start()
    until(lambda: app.get("/health").json()["engines"]["gpt2-slow:pt"]["queued_requests"] == 1)
    refused = app.post("/gpt2_model", json=long_request)
    running.join()
    waiting.join()
    after = scrape(app)

    assert (bad.status_code, unknown.status_code, refused.status_code) == (422, 404, 429)
    assert [r.status_code for r in results] == [200, 200]
    requests = grown(before, after, "textgen_requests_total")
    asked = {
        (("route", "/gpt2_model"), ("status_code", "200")): 3.0,
        (("route", "/gpt2_model"), ("status_code", "422")): 1.0,
        (("route", "/gpt2_model"), ("status_code", "429")): 1.0,
        (("route", "/llama_model"), ("status_code", "200")): 1.0,
        (("route", "/v1/completions"), ("status_code", "200")): 1.0,
        (("route", "/v1/completions"), ("status_code", "404")): 1.0,
        (("route", "/v1/chat/completions"), ("status_code", "200")): 1.0,
    }
    counted = {k: v for k, v in requests.items() if dict(k)["route"] not in ("/health", "/metrics")}
    assert counted == asked
    assert counted != {**asked, next(iter(asked)): 4.0}  # live check: a wrong count is caught

    # Tokens: prompts as the models' tokenizers count them, generations as the answers say.
    def prompt_tokens(model: str, text: str) -> float:
        return float(len(ModelTokenizer(engine_store / model).encode([text])[0]))

    usage = [
        line
        for line in streamed.text.splitlines()
        if '"usage"' in line and '"prompt_tokens"' in line
    ]
    assert usage, streamed.text
    slow = [r.json()["results"][0]["generated_tokens"] for r in results]
    expected_generated = {
        "gpt2-test": answers["gpt2"]["results"][0]["generated_tokens"] + 5,
        "llama-test": answers["llama"]["results"][0]["generated_tokens"],
        "llama-chat-test": chat["usage"]["completion_tokens"],
        "gpt2-slow": sum(slow),
    }
    generated = {
        dict(k)["model_name"]: v
        for k, v in grown(before, after, "textgen_generation_tokens_total").items()
    }
    assert generated == {m: float(n) for m, n in expected_generated.items()}
    prompts = {
        dict(k)["model_name"]: v
        for k, v in grown(before, after, "textgen_prompt_tokens_total").items()
    }
    assert prompts["gpt2-test"] == prompt_tokens("gpt2-test", "Hello") + prompt_tokens(
        "gpt2-test", "Once"
    )
    assert prompts["llama-test"] == prompt_tokens("llama-test", "Hi there")
    assert prompts["llama-chat-test"] == chat["usage"]["prompt_tokens"]
    assert prompts["gpt2-slow"] == 2 * prompt_tokens("gpt2-slow", "Long")
    finished = grown(before, after, "textgen_request_finished_total")
    assert sum(finished.values()) == 6  # a row each: 2 + 1 + 1 + 2 (the 429 never ran)
    # Each histogram saw every request that ran, once: 2 gpt2-test, 1 llama-test, 1 chat, 2 slow.
    requests_by_model = {
        "gpt2-test": 2.0,
        "llama-test": 1.0,
        "llama-chat-test": 1.0,
        "gpt2-slow": 2.0,
    }
    for histogram in HISTOGRAMS[:1] + HISTOGRAMS[2:]:
        counts = {
            dict(k)["model_name"]: v for k, v in grown(before, after, f"{histogram}_count").items()
        }
        assert counts == requests_by_model, histogram
    # The waiting request queued behind the running one: its queue time shows it.
    queue_sum = grown(before, after, "textgen_queue_time_seconds_sum")
    assert queue_sum[(("model_name", "gpt2-slow"),)] > 0.05
    # The engines' state, read at scrape time: idle now, the batch sizes of the steps that ran.
    assert after[("textgen_running_requests", (("model_name", "gpt2-slow"),))] == 0
    assert after[("textgen_loaded_models", ())] == 2  # MAX_LOADED_MODELS: the last two used
    steps = after[("textgen_batch_size_count", (("model_name", "gpt2-slow"),))]
    assert steps >= sum(slow) - 2  # a step a token, less the prompts' own
    assert after[("textgen_batch_size_bucket", (("le", "1"), ("model_name", "gpt2-slow")))] == steps


def test_metrics_are_open_unless_a_setting_closes_them(engine_store: Path) -> None:
    keyed = Settings(model_store=str(engine_store), api_keys=["k1"])
    with TestClient(create_app(keyed)) as open_app:
        assert open_app.get("/metrics").status_code == 200
        assert open_app.get("/models").status_code == 401  # live check: the keys are on
    closing = keyed.model_copy(update={"metrics_require_api_key": True})
    with TestClient(create_app(closing)) as closed:
        assert closed.get("/metrics").status_code == 401
        assert closed.get("/metrics", headers={"Authorization": "Bearer k1"}).status_code == 200


SERVE_ONE = """
import json, sys
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from handlers.factory import create_app
from textgen.settings import Settings

with TestClient(create_app(Settings(model_store=sys.argv[1]))) as client:
    body = {"model_name": "gpt2-test", "prompts": ["Hi"], "max_tokens": 2}
    assert client.post("/gpt2_model", json=body).status_code == 200
    text = client.get("/metrics").text
counted = {
    sample.name: sample.value
    for family in text_string_to_metric_families(text)
    for sample in family.samples
    if sample.labels.get("route") == "/gpt2_model" or sample.labels.get("model_name") == "gpt2-test"
}
print(json.dumps(counted))
"""


def test_server_processes_sharing_a_multiprocess_folder_are_counted_together(
    store_dir: Path, tmp_path: Path
) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    first = fresh_python(SERVE_ONE, str(store_dir), env=env)
    second = fresh_python(SERVE_ONE, str(store_dir), env=env)
    alone = fresh_python(SERVE_ONE, str(store_dir))  # the variable unset: one process's own

    assert first["textgen_requests_total"] == 1
    assert second["textgen_requests_total"] == 2  # the first process's request too
    assert second["textgen_e2e_request_latency_seconds_count"] == 2
    assert alone["textgen_requests_total"] == 1  # live check: without the folder, its own only
