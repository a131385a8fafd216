"""Schema fuzzing: schemathesis generates requests from the app's own OpenAPI documents, valid
and invalid, for every route, and checks each answer: no 5xx, the documented status and schema,
data the documents rule out refused. What the documents say is then what the code enforces.

Not checked: that every schema-valid request is accepted. A model must exist, be of the
endpoint's family, and fit a prompt in its context, which no schema can say; such requests get
their documented 4xx instead."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.servers import console_script, free_port, python_module, running_server

pytestmark = pytest.mark.slow

EXAMPLES_PER_ROUTE = 40
WARM_MODELS = [
    ("gpt2_model", "gpt2-test"),
    ("llama_model", "llama-test"),
    ("llama_model", "llama-chat-test"),
]


def test_every_route_answers_as_its_openapi_documents_say(store_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    command = python_module("handlers.cli", "serve", "--port", str(port), "--log-level", "warning")
    limits = {"MAX_NEW_TOKENS_CAP": "8", "DEFAULT_MAX_TOKENS": "8", "MAX_PROMPTS": "4"}
    with running_server(command, port, {"MODEL_STORE": str(store_dir), **limits}) as url:
        # Loaded first: a cold load (torch and transformers imported) can outlast the 10 s that
        # schemathesis allows a response, and response times are checked on a warm service.
        for endpoint, model in WARM_MODELS:
            warmed = httpx.post(
                f"{url}/{endpoint}",
                json={"model_name": model, "prompts": ["Hello"], "max_tokens": 1},
                timeout=120,
            )
            assert warmed.status_code == 200, warmed.text
        fuzzed = subprocess.run(
            [
                console_script("schemathesis"),
                "run",
                f"{url}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                str(EXAMPLES_PER_ROUTE),
                "--workers",
                "1",
                "--seed",
                "20261127",
                "--no-color",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        health = httpx.get(f"{url}/health", timeout=30)

    assert fuzzed.returncode == 0, fuzzed.stdout[-6000:]
    assert " passed" in fuzzed.stdout and "failures" not in fuzzed.stdout.lower()
    assert health.status_code == 200  # alive after all of it
