"""The handler under AWS's real runtime interface client, as the Lambda base image runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dockerfile import parse
from tests.support.lambda_runtime import RuntimeApiEmulator, body_of
from tests.support.lambda_support import load_event
from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.slow

# What the Lambda base image runs: `python -m awslambdaric <CMD>`, with the Dockerfile's CMD.
(HANDLER,) = parse(REPO_ROOT / "Dockerfile").stages["lambda"].last("CMD").exec_form() or []


@pytest.fixture(scope="module")
def runtime(
    store_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RuntimeApiEmulator, Path]]:
    log = tmp_path_factory.mktemp("lambda") / "stdout.log"
    with RuntimeApiEmulator() as emulator, log.open("w") as out:
        env = {
            "PATH": "/usr/bin:/bin",
            "AWS_LAMBDA_RUNTIME_API": emulator.address,
            "AWS_LAMBDA_FUNCTION_NAME": "textgen",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": "us-east-1",
            "MODEL_STORE": str(store_dir),
            "MAX_NEW_TOKENS_CAP": "64",
            "DEFAULT_MAX_TOKENS": "16",
            "POWERTOOLS_METRICS_NAMESPACE": "ServerlessTextgen",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "HOME": str(log.parent),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", HANDLER],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield emulator, log
        finally:
            process.terminate()
            process.wait(timeout=20)


def test_generation_through_the_runtime_client(runtime: tuple[RuntimeApiEmulator, Path]) -> None:
    emulator, log = runtime

    status, body = body_of(emulator.invoke(load_event("rest-gpt2-model")))
    warm_status, warm = body_of(emulator.invoke(load_event("http-gpt2-model")))

    assert status == 200, body
    assert len(body["results"]) == 2
    assert body["timing"]["model_loaded"] is True
    assert warm_status == 200
    assert warm["timing"]["model_loaded"] is False
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    logs = [line for line in lines if line.get("message") == "generated"]
    assert [line["cold_start"] for line in logs] == [True, False]
    assert all(line["function_request_id"] for line in logs)
    emf = [line for line in lines if "_aws" in line]
    metric_names = {
        m["Name"]
        for line in emf
        for directive in line["_aws"]["CloudWatchMetrics"]
        for m in directive["Metrics"]
    }
    assert {"ColdStart", "Prompts", "TokensPerSecond", "ModelLoadSeconds"} <= metric_names


def test_a_bad_request_and_health(runtime: tuple[RuntimeApiEmulator, Path]) -> None:
    emulator, _ = runtime

    bad_status, bad = body_of(emulator.invoke(load_event("rest-bad-request")))
    health_status, health = body_of(emulator.invoke(load_event("rest-health")))

    assert bad_status == 422
    assert bad["error"]["type"] == "invalid_request"
    assert health_status == 200
    assert health["status"] == "ok"


def test_a_handler_error_is_reported_to_the_runtime_api(
    runtime: tuple[RuntimeApiEmulator, Path],
) -> None:
    emulator, _ = runtime

    outcome = emulator.invoke({"not": "an HTTP event"})
    after = emulator.invoke(load_event("rest-health"))

    assert outcome.kind == "error"
    assert outcome.payload["errorType"] == "RuntimeError"
    assert "infer" in outcome.payload["errorMessage"]
    assert after.kind == "response"
