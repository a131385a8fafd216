"""The Batch API on AWS's engines, against moto's server on loopback (S3 and SQS): the server
puts chunks on SQS, and workers run them: `textgen batch-worker` processes (one killed with
SIGKILL mid-chunk) and the Lambda handler, driven with a SAM-generated SQS event."""

from __future__ import annotations

import asyncio
import base64
import copy
import gc
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import httpx2
import openai
import pytest

from handlers.lambda_context import LocalLambdaContext
from tests.support.batch_files import by_custom_id, completion_line, jsonl, wait_until_final
from tests.support.lambda_support import load_event
from tests.support.s3_server import moto_server
from tests.support.servers import (
    REPO_ROOT,
    console_script,
    free_port,
    python_module,
    running_server,
)
from textgen.settings import get_settings

AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_url: str, engine_store: Path) -> dict[str, str]:
    """A bucket and a queue of this test's own (chunks come back 2 s after a worker took them
    without deleting them); the settings that name them."""
    env = {**AWS, "AWS_ENDPOINT_URL": moto_url}
    session = boto3.session.Session(**_credentials())
    name = f"batches-{uuid.uuid4().hex[:12]}"
    session.client("s3", endpoint_url=moto_url).create_bucket(Bucket=name)
    queue = session.client("sqs", endpoint_url=moto_url).create_queue(
        QueueName=name, Attributes={"VisibilityTimeout": "2"}
    )
    return {
        **env,
        "MODEL_STORE": str(engine_store),
        "BATCH_BUCKET": name,
        "BATCH_QUEUE_URL": queue["QueueUrl"],
        "BATCH_CHUNK_LINES": "2",
    }


@pytest.fixture
def client(aws: dict[str, str]) -> Iterator[openai.OpenAI]:
    port = free_port()
    command = python_module("handlers.cli", "serve", "--port", str(port), "--log-level", "warning")
    with running_server(command, port, aws) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def create(client: openai.OpenAI, lines: list[str]) -> str:
    source = client.files.create(file=("in.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
    return client.batches.create(
        input_file_id=source.id, endpoint="/v1/completions", completion_window="24h"
    ).id


def worker(aws: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [console_script("textgen"), "batch-worker", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **aws},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_worker_killed_mid_chunk_loses_nothing_and_nothing_is_written_twice(
    aws: dict[str, str], client: openai.OpenAI
) -> None:
    lines = [completion_line(f"w-{i}", "llama-test", f"Line {i}", 48) for i in range(40)]
    batch_id = create(client, lines)
    first = worker(aws, "--chunks-at-once", "2")
    try:
        while (at_kill := client.batches.retrieve(batch_id)).request_counts.completed < 4:  # type: ignore[union-attr]
            assert first.poll() is None, "the worker stopped on its own"
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    second = worker(aws, "--idle-exit", "5")
    try:
        batch = wait_until_final(client, batch_id)
    finally:
        second.terminate()
        second.wait(30)
    found = by_custom_id(batch, client)

    assert at_kill.status == "in_progress"
    assert batch.status == "completed"
    assert batch.request_counts is not None and batch.request_counts.completed == 40
    assert sorted(found) == sorted(f"w-{i}" for i in range(40))
    assert all(len(lines) == 1 for lines in found.values())


def run_lambda(aws: dict[str, str], event: dict[str, Any]) -> dict[str, Any]:
    """The worker function's handler in a fresh process, configured as the template does."""
    code = (
        "import json, sys\n"
        "from handlers.batch_worker import handler\n"
        "print(json.dumps(handler(json.load(sys.stdin), None)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(event),
        cwd=REPO_ROOT,
        env={**os.environ, **aws},
        capture_output=True,
        text=True,
        check=True,
    )
    answer: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return answer


def test_the_lambda_worker_runs_sqs_events_and_reports_only_the_bad_message(
    aws: dict[str, str], client: openai.OpenAI
) -> None:
    lines = [completion_line(f"l-{i}", "gpt2-test", f"Line {i}") for i in range(3)]
    batch_id = create(client, lines)
    records = taken_chunks(aws)
    bad = {**copy.deepcopy(records[0]), "messageId": "not-a-chunk", "body": "CHUNK"}

    answer = run_lambda(aws, {"Records": [*records, bad]})
    again = run_lambda(aws, {"Records": records})  # delivered twice
    batch = client.batches.retrieve(batch_id)
    found = by_custom_id(batch, client)

    assert len(records) == 2  # 3 lines, 2 a chunk
    assert answer == {"batchItemFailures": [{"itemIdentifier": "not-a-chunk"}]}
    assert again == {"batchItemFailures": []}
    assert batch.status == "completed"
    assert batch.request_counts is not None and batch.request_counts.completed == 3
    assert sorted(found) == ["l-0", "l-1", "l-2"]
    assert all(len(lines) == 1 for lines in found.values())


def taken_chunks(aws: dict[str, str]) -> list[dict[str, Any]]:
    """The chunk messages on the queue (up to 10), taken as Lambda's poller takes them, each in
    the SAM-generated SQS event's record."""
    sqs = boto3.session.Session(**_credentials()).client(
        "sqs", endpoint_url=aws["AWS_ENDPOINT_URL"]
    )
    messages = sqs.receive_message(
        QueueUrl=aws["BATCH_QUEUE_URL"], MaxNumberOfMessages=10, VisibilityTimeout=300
    ).get("Messages", [])
    template = load_event("sqs-chunk")["Records"][0]
    return [
        {**copy.deepcopy(template), "messageId": m["MessageId"], "body": m["Body"]}
        for m in messages
    ]


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }


@pytest.fixture
def lambda_functions(aws: dict[str, str]) -> Iterator[tuple[ModuleType, ModuleType]]:
    """The API function's and the worker function's handlers, imported as Lambda imports them:
    configured by the environment, as template.yaml sets it."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in aws.items():
            env.setenv(name, value)
        get_settings.cache_clear()
        import handlers.batch_worker
        import handlers.lambda_function
        import handlers.warm_start

        importlib.reload(handlers.warm_start)
        worker_module = importlib.reload(handlers.batch_worker)
        yield importlib.reload(handlers.lambda_function), worker_module
    get_settings.cache_clear()
    gc.unfreeze()  # what the import froze (handlers.cold_start) is this process' to collect again


def through_api_gateway(api: ModuleType) -> openai.OpenAI:
    """The official client, each request sent as API Gateway's event (SAM-generated) to the
    API function's handler."""

    def send(request: httpx2.Request) -> httpx2.Response:
        event = load_event("rest-v1-batches")
        query = dict(request.url.params)
        event.update(
            httpMethod=request.method,
            path=request.url.path.removeprefix("/Prod"),
            resource=request.url.path.removeprefix("/Prod"),
            body=request.content.decode(),
            isBase64Encoded=False,
            queryStringParameters=query or None,
            multiValueQueryStringParameters={k: [v] for k, v in query.items()} or None,
        )
        content_type = request.headers.get("content-type", "application/json")
        event["headers"] = {**event["headers"], "Content-Type": content_type}
        event["multiValueHeaders"] = {**event["multiValueHeaders"], "Content-Type": [content_type]}
        response = api.handler(event, LocalLambdaContext())
        body = response["body"]
        raw = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
        headers = {**response["headers"], "content-length": str(len(raw))}
        return httpx2.Response(response["statusCode"], headers=headers, content=raw)

    return openai.OpenAI(
        base_url="https://example.execute-api.us-east-1.amazonaws.com/Prod/v1",
        api_key="unused",
        http_client=httpx2.Client(transport=httpx2.MockTransport(send)),
        max_retries=0,
    )


def test_a_batch_through_api_gateway_and_the_sqs_workers(
    aws: dict[str, str], lambda_functions: tuple[ModuleType, ModuleType]
) -> None:
    api, worker_function = lambda_functions
    client = through_api_gateway(api)
    lines = [completion_line(f"g-{i}", "gpt2-test", f"Line {i}") for i in range(5)]
    batch_id = create(client, lines)
    while records := taken_chunks(aws):
        answer = worker_function.handler({"Records": records}, LocalLambdaContext())
        assert answer == {"batchItemFailures": []}
    # The two functions share this process here, not on Lambda: the worker's asyncio.run left
    # the thread without the event loop that Mangum takes for the API function.
    asyncio.set_event_loop(asyncio.new_event_loop())

    batch = client.batches.retrieve(batch_id)
    found = by_custom_id(batch, client)

    assert batch.status == "completed"
    assert batch.request_counts is not None and batch.request_counts.completed == 5
    assert sorted(found) == [f"g-{i}" for i in range(5)]
    assert all(len(lines) == 1 for lines in found.values())
    assert batch_id in [b.id for b in client.batches.list()]


def test_a_batch_cancelled_on_aws_runs_no_more_chunks_and_finalizes_as_cancelled(
    aws: dict[str, str], lambda_functions: tuple[ModuleType, ModuleType]
) -> None:
    api, worker_function = lambda_functions
    client = through_api_gateway(api)
    lines = [completion_line(f"x-{i}", "gpt2-test", f"Line {i}") for i in range(4)]
    batch_id = create(client, lines)
    cancelling = client.batches.cancel(batch_id)
    records = taken_chunks(aws)

    answer = worker_function.handler({"Records": records}, LocalLambdaContext())
    asyncio.set_event_loop(asyncio.new_event_loop())  # as above: Mangum's loop for the API
    batch = client.batches.retrieve(batch_id)
    found = by_custom_id(batch, client)

    assert cancelling.status == "cancelling" and len(records) == 2
    assert answer == {"batchItemFailures": []}
    assert batch.status == "cancelled" and batch.output_file_id is None
    assert batch.request_counts is not None and batch.request_counts.failed == 4
    assert sorted(found) == [f"x-{i}" for i in range(4)]
    assert all(ls[0]["error"]["code"] == "batch_cancelled" for ls in found.values())
