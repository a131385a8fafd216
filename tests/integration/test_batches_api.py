"""OpenAI's Batch API (/v1/files, /v1/batches) through the official `openai` client against
uvicorn on loopback, batches run by the server on its own engines."""

from __future__ import annotations

import io
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from handlers.factory import create_app
from tests.support.batch_files import (
    by_custom_id,
    chat_line,
    completion_line,
    jsonl,
    output_lines,
    wait_until_final,
)
from tests.support.servers import free_port, python_module, running_process, running_server
from textgen.settings import Settings

KEYS = ("key-one", "key-two")
FILE_LIMIT = 3_000_000  # bytes an upload may have here; a line, MAX_BODY_BYTES (1 MB)


def serve(store: Path, batch_dir: Path, **env: str) -> Any:
    return running_server(*_server(store, batch_dir, **env))


def _server(store: Path, batch_dir: Path, **env: str) -> tuple[list[str], int, dict[str, str]]:
    port = free_port()
    command = python_module("handlers.cli", "serve", "--port", str(port), "--log-level", "warning")
    return command, port, {"MODEL_STORE": str(store), "BATCH_DIR": str(batch_dir), **env}


@pytest.fixture(scope="module")
def url(engine_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    batch_dir = tmp_path_factory.mktemp("batches")
    limits = {"BATCH_CHUNK_LINES": "2", "MAX_BATCH_FILE_BYTES": str(FILE_LIMIT)}
    with serve(engine_store, batch_dir, API_KEYS=",".join(KEYS), **limits) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEYS[0], max_retries=0)


@pytest.fixture(scope="module")
def other(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEYS[1], max_retries=0)


def upload(client: openai.OpenAI, lines: list[str], name: str = "in.jsonl") -> str:
    return client.files.create(file=(name, io.BytesIO(jsonl(lines))), purpose="batch").id


def test_files_upload_list_retrieve_content_and_delete(client: openai.OpenAI) -> None:
    data = jsonl([completion_line("a", "gpt2-test", "Hello")])
    made = client.files.create(file=("mine.jsonl", io.BytesIO(data)), purpose="batch")

    listed = [f.id for f in client.files.list(purpose="batch")]
    again = client.files.retrieve(made.id)
    content = client.files.content(made.id).content
    deleted = client.files.delete(made.id)

    assert (made.object, made.purpose, made.bytes, made.filename) == (
        "file",
        "batch",
        len(data),
        "mine.jsonl",
    )
    assert made.id in listed and again.id == made.id
    assert content == data
    assert deleted.deleted and deleted.id == made.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(made.id)
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("x.jsonl", io.BytesIO(data)), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="UTF-8"):
        client.files.create(file=("x.jsonl", io.BytesIO(b"\xff\xfe")), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.files.create(file=("x.jsonl", io.BytesIO(b"")), purpose="batch")


def test_files_made_in_one_second_are_listed_newest_first(client: openai.OpenAI) -> None:
    line = completion_line("a", "gpt2-test", "Hi")
    made = [upload(client, [line], f"{i}.jsonl") for i in range(8)]

    listed = [f.id for f in client.files.list(purpose="batch")]

    assert [file_id for file_id in listed if file_id in made] == made[::-1]


def test_lists_page_through_every_file_once_even_past_a_deleted_cursor(
    client: openai.OpenAI,
) -> None:
    line = completion_line("a", "gpt2-test", "Hi")
    made = [upload(client, [line], f"page-{i}.jsonl") for i in range(5)]

    # The official client pages on its own, each page's last_id as the next one's `after`.
    paged = [f.id for f in client.files.list(purpose="batch", limit=2, order="asc")]
    first = client.files.list(purpose="batch", limit=2)  # newest first: made[4], made[3]
    client.files.delete(first.data[-1].id)  # the cursor's own file is gone before the next page
    rest = client.files.list(purpose="batch", limit=2, after=first.data[-1].id)

    assert [file_id for file_id in paged if file_id in made] == made
    assert len(paged) == len(set(paged))
    assert [f.id for f in first.data] == [made[4], made[3]]
    assert [f.id for f in rest.data] == [made[2], made[1]] and rest.has_more
    for listing in (client.files.list, client.batches.list):
        with pytest.raises(openai.BadRequestError, match="after"):
            listing(after="not-an-id")


def test_a_batch_answers_every_line_as_the_api_does_and_fails_only_its_bad_lines(
    client: openai.OpenAI,
) -> None:
    prompts = ["Hello there", "The sea", "Call me", "A whale", "It was"]
    lines = [
        completion_line(f"req-{i}", "gpt2-test" if i % 2 else "llama-test", prompt)
        for i, prompt in enumerate(prompts)
    ]
    lines.append(completion_line("unknown-model", "no-such-model", "Hello"))
    created = client.batches.create(
        input_file_id=upload(client, lines),
        endpoint="/v1/completions",
        completion_window="24h",
        metadata={"purpose": "test"},
    )

    batch = wait_until_final(client, created.id)
    found = by_custom_id(batch, client)

    assert created.status == "in_progress" and created.metadata == {"purpose": "test"}
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (6, 5)
    assert batch.request_counts.failed == 1
    assert sorted(found) == sorted(["unknown-model", *(f"req-{i}" for i in range(5))])
    assert all(len(lines) == 1 for lines in found.values())  # each custom_id exactly once
    failed = found["unknown-model"][0]["response"]
    assert failed["status_code"] == 404 and failed["body"]["error"]["code"] == "model_not_found"
    for i, prompt in enumerate(prompts):
        body = json.loads(lines[i])["body"]
        alone = client.completions.create(**body)
        answered = found[f"req-{i}"][0]["response"]
        assert answered["status_code"] == 200
        assert answered["body"]["choices"][0]["text"] == alone.choices[0].text, prompt
    # The comparison can fail: another prompt's answer differs.
    assert (
        found["req-0"][0]["response"]["body"]["choices"][0]["text"]
        != (found["req-2"][0]["response"]["body"]["choices"][0]["text"])
    )
    assert batch.id in [b.id for b in client.batches.list()]


def test_a_chat_batch(client: openai.OpenAI) -> None:
    lines = [chat_line(f"chat-{i}", "llama-chat-test", f"Say {i}") for i in range(3)]
    batch = wait_until_final(
        client,
        client.batches.create(
            input_file_id=upload(client, lines),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        ).id,
    )

    answers = output_lines(client, batch.output_file_id)

    assert batch.status == "completed" and batch.error_file_id is None
    assert [a["custom_id"] for a in answers] == ["chat-0", "chat-1", "chat-2"]
    assert all(a["response"]["body"]["object"] == "chat.completion" for a in answers)
    with pytest.raises(openai.BadRequestError, match="completed"):
        client.batches.cancel(batch.id)


def test_a_file_with_a_byte_order_mark_crlf_and_line_separators_in_its_strings_runs_whole(
    client: openai.OpenAI,
) -> None:
    # As editors and json.dumps(..., ensure_ascii=False) write them: U+2028, U+2029 and U+0085
    # are characters a JSON string may hold, not line ends.
    prompts = ["Up\u2028down", "Left\u0085right", "In\u2029out"]
    lines = [
        json.dumps(
            {
                "custom_id": f"sep-{i}",
                "url": "/v1/completions",
                "body": {"model": "gpt2-test", "prompt": prompt, "max_tokens": 3, "echo": True},
            },
            ensure_ascii=False,
        )
        for i, prompt in enumerate(prompts)
    ]
    data = b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"
    source = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch").id
    batch = wait_until_final(
        client,
        client.batches.create(
            input_file_id=source, endpoint="/v1/completions", completion_window="24h"
        ).id,
    )
    found = by_custom_id(batch, client)

    assert batch.status == "completed"
    assert batch.request_counts is not None and batch.request_counts.completed == 3
    for i, prompt in enumerate(prompts):  # echoed: each prompt came through whole
        assert found[f"sep-{i}"][0]["response"]["body"]["choices"][0]["text"].startswith(prompt)


def test_a_bad_file_is_refused_at_create_naming_its_first_bad_lines(
    client: openai.OpenAI,
) -> None:
    good = completion_line("ok", "gpt2-test", "Hello")
    bad_body = json.loads(completion_line("bad-body", "gpt2-test", "Hello"))
    bad_body["body"]["max_tokens"] = -1
    lines = [
        good,
        "{not json",
        json.dumps({**json.loads(good), "custom_id": "x", "url": "/v1/embeddings"}),
        json.dumps({k: v for k, v in json.loads(good).items() if k != "custom_id"}),
        good,  # the custom_id "ok" again
        json.dumps(bad_body),
        chat_line("other-endpoint", "llama-chat-test", "Hi"),
    ]
    before = [b.id for b in client.batches.list()]

    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(
            input_file_id=upload(client, lines),
            endpoint="/v1/completions",
            completion_window="24h",
        )

    message = str(refused.value)
    for number, why in [(2, "not JSON"), (3, "url"), (4, "custom_id"), (5, "earlier line")]:
        assert f"line {number}: " in message and why in message
    assert "line 6: body.max_tokens" in message and "and 1 more" in message
    assert [b.id for b in client.batches.list()] == before  # nothing was made


def test_a_huge_line_is_refused_at_create_and_a_huge_file_at_upload(
    client: openai.OpenAI,
) -> None:
    huge = completion_line("huge", "gpt2-test", "word " * 250_000)  # 1.25 MB, under FILE_LIMIT
    with pytest.raises(openai.BadRequestError, match="line 2: longer than 1048576 bytes"):
        client.batches.create(
            input_file_id=upload(client, [completion_line("ok", "gpt2-test", "Hi"), huge]),
            endpoint="/v1/completions",
            completion_window="24h",
        )
    too_big = io.BytesIO(b"x" * (FILE_LIMIT + 1))
    with pytest.raises(openai.APIStatusError) as refused:
        client.files.create(file=("big.jsonl", too_big), purpose="batch")
    assert refused.value.status_code == 413


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"endpoint": "/v1/embeddings"}, "endpoint"),
        ({"completion_window": "48h"}, "completion_window"),
        ({"input_file_id": "file-" + "0" * 32}, "file_id"),
        ({"extra_body": {"input_file": "typo"}}, "input_file"),
        ({"metadata": {"note": "x" * 513}}, "metadata.note"),
    ],
)
def test_a_bad_create_request_is_a_400_or_404_naming_its_field(
    client: openai.OpenAI, change: dict[str, str], field: str
) -> None:
    args = {
        "input_file_id": upload(client, [completion_line("a", "gpt2-test", "Hi")]),
        "endpoint": "/v1/completions",
        "completion_window": "24h",
        **change,
    }
    with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as refused:
        client.batches.create(**args)  # type: ignore[arg-type]
    assert refused.value.body["param"] == field  # type: ignore[index]


def test_cancel_stops_new_chunks_and_finalizes_what_is_done(client: openai.OpenAI) -> None:
    lines = [completion_line(f"c-{i}", "llama-test", f"Line {i}", 24) for i in range(40)]
    created = client.batches.create(
        input_file_id=upload(client, lines), endpoint="/v1/completions", completion_window="24h"
    )

    cancelling = client.batches.cancel(created.id)
    batch = wait_until_final(client, created.id)
    found = by_custom_id(batch, client)

    assert cancelling.status == "cancelling"
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    counts = batch.request_counts
    assert counts is not None and counts.total == 40 == counts.completed + counts.failed
    assert sorted(found) == sorted(f"c-{i}" for i in range(40))
    assert all(len(lines) == 1 for lines in found.values())
    unrun = [ls[0] for ls in found.values() if ls[0]["error"] is not None]
    assert unrun and all(u["error"]["code"] == "batch_cancelled" for u in unrun)
    assert len(unrun) == counts.failed
    assert client.batches.cancel(created.id).status == "cancelled"  # cancelling again: a no-op


def test_another_keys_files_and_batches_are_not_found(
    client: openai.OpenAI, other: openai.OpenAI, url: str
) -> None:
    file_id = upload(client, [completion_line("a", "gpt2-test", "Hi")])
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/completions", completion_window="24h"
    )

    for attempt in (
        lambda: other.files.retrieve(file_id),
        lambda: other.files.content(file_id),
        lambda: other.files.delete(file_id),
        lambda: other.batches.retrieve(batch.id),
        lambda: other.batches.cancel(batch.id),
        lambda: other.batches.create(
            input_file_id=file_id, endpoint="/v1/completions", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert file_id not in [f.id for f in other.files.list()]
    assert batch.id not in [b.id for b in other.batches.list()]
    assert client.files.retrieve(file_id).id == file_id  # the owner still sees both
    assert client.batches.retrieve(batch.id).id == batch.id
    unauthenticated = httpx.get(f"{url}/v1/batches/{batch.id}")
    assert unauthenticated.status_code == 401


def kill(server: Any) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()


def stop_while_a_client_sends(server: Any) -> None:
    """SIGTERM while a client is still sending a request: the server drains that connection
    (SHUTDOWN_GRACE_S) while its batch's workers go on, or not."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as slow_client:
        slow_client.sendall(  # a body that never comes whole
            b"POST /gpt2_model HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=60)


@pytest.mark.parametrize("stop", [kill, stop_while_a_client_sends], ids=["killed", "stopped"])
def test_a_server_stopped_mid_batch_answers_the_rest_when_it_starts_each_line_once(
    engine_store: Path, tmp_path: Path, stop: Any
) -> None:
    """The lines it did not answer are neither failed nor lost: they run after the restart."""
    lines = [completion_line(f"k-{i}", "llama-test", f"Line {i}", 48) for i in range(80)]
    env = {"BATCH_CHUNK_LINES": "2", "SHUTDOWN_GRACE_S": "4"}
    with running_process(*_server(engine_store, tmp_path, **env)) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        batch_id = client.batches.create(
            input_file_id=upload(client, lines),
            endpoint="/v1/completions",
            completion_window="24h",
        ).id
        while (at_stop := client.batches.retrieve(batch_id)).request_counts.completed < 4:  # type: ignore[union-attr]
            time.sleep(0.05)
        stop(server)
    with serve(engine_store, tmp_path) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        batch = wait_until_final(client, batch_id)
        found = by_custom_id(batch, client)

    assert at_stop.status == "in_progress"  # stopped mid-batch
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (80, 0)
    assert sorted(found) == sorted(f"k-{i}" for i in range(80))
    assert all(len(lines) == 1 for lines in found.values())


def test_without_a_process_that_outlives_requests_create_is_a_503_that_writes_nothing(
    store_dir: Path, tmp_path: Path
) -> None:
    # As on Lambda through Mangum without the AWS settings: no lifespan, so no chunk queue.
    app = create_app(Settings(model_store=str(store_dir), batch_dir=tmp_path))
    http = TestClient(app)  # not entered: the lifespan does not run
    lines = jsonl([completion_line("a", "gpt2-test", "Hi")])
    made = http.post("/v1/files", files={"file": ("in.jsonl", lines)}, data={"purpose": "batch"})
    body = {"input_file_id": made.json()["id"], "endpoint": "/v1/completions"}

    refused = http.post("/v1/batches", json=body)

    assert made.status_code == 200
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "batches_unavailable"
    assert "BATCH_QUEUE_URL" in refused.json()["error"]["message"]
    assert http.get("/v1/batches").json()["data"] == []
