"""The service as it really runs: uvicorn on loopback, started by the documented commands."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import console_script, free_port, python_module, running_server

pytestmark = pytest.mark.slow


def generate(url: str, path: str, model: str, prompts: list[str]) -> dict[str, Any]:
    response = httpx.post(
        f"{url}{path}",
        json={"model_name": model, "prompts": prompts, "max_tokens": 8},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_uvicorn_serves_sixteen_concurrent_requests_without_mixing_them(store_dir: Path) -> None:
    port = free_port()
    command = python_module(
        "uvicorn", "handlers.app:app", "--host", "127.0.0.1", "--port", str(port)
    )
    with running_server(command, port, {"MODEL_STORE": str(store_dir)}) as url:
        # Each request its own prompts (and half of them the other endpoint), batch sizes 1 to 3.
        jobs = [
            (
                "/gpt2_model" if i % 2 == 0 else "/llama_model",
                "gpt2-test" if i % 2 == 0 else "llama-test",
                [f"Request {i} says hello number {j}" for j in range(1 + i % 3)],
            )
            for i in range(16)
        ]
        expected = [generate(url, *job)["results"] for job in jobs]
        with ThreadPoolExecutor(max_workers=16) as pool:
            concurrent = list(pool.map(lambda job: generate(url, *job), jobs))
        bad = httpx.post(f"{url}/gpt2_model", content=b"{oops", timeout=10)
        health = httpx.get(f"{url}/health", timeout=10)

    assert [body["results"] for body in concurrent] == expected
    assert all(not body["timing"]["model_loaded"] for body in concurrent)
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "malformed_body"
    assert health.json()["status"] == "ok"


def test_textgen_serve_builds_the_demo_store_and_serves_it(tmp_path: Path) -> None:
    port = free_port()
    command = [console_script("textgen"), "serve", "--port", str(port)]
    # With MODEL_STORE unset, the default store lives in the user's cache folder.
    env = {"HOME": str(tmp_path), "MODEL_STORE": ""}
    with running_server(command, port, env, timeout=300) as url:
        models = httpx.get(f"{url}/models", timeout=10).json()
        gpt2 = generate(url, "/gpt2_model", "gpt2-tiny", ["Hello, world"])
        llama = generate(url, "/llama_model", "llama-tiny", ["Hello, world"])

    assert {m["name"]: m["family"] for m in models["models"]} == {
        "gpt2-tiny": "gpt2",
        "llama-tiny": "llama",
    }
    assert models["store"] == str(tmp_path / ".cache" / "serverless-textgen" / "demo-store")
    assert gpt2["results"][0]["generated_text"]
    assert llama["results"][0]["generated_text"]
