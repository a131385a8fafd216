"""`textgen run-batch`: OpenAI's batch file format run on the engines, as a user runs it (the
installed command): each answer is what the API gives for the same body, every custom_id comes
out once, in input order, failures with their error, a bad file refused before anything runs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from handlers.factory import create_app
from handlers.openai_api.batch import parse_batch
from tests.support.servers import console_script
from textgen.settings import Settings

pytestmark = pytest.mark.slow

COMPLETION = {"model": "gpt2-test", "max_tokens": 6, "temperature": 0}
CHAT = {"model": "llama-chat-test", "max_tokens": 6, "temperature": 0}
LINES: list[tuple[str, str, dict[str, Any]]] = [
    ("first", "/v1/completions", {**COMPLETION, "prompt": "Hello there"}),
    ("chat", "/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "Hi"}]}),
    ("ids", "/v1/completions", {**COMPLETION, "prompt": [[5, 7, 9], [11]], "logprobs": 1}),
    ("missing-model", "/v1/completions", {**COMPLETION, "model": "no-such-model", "prompt": "x"}),
    ("seeded", "/v1/completions", {**COMPLETION, "prompt": "Once", "n": 2, "seed": 7}),
    ("too-long", "/v1/completions", {**COMPLETION, "prompt": "word " * 5000}),
    ("last", "/v1/completions", {**COMPLETION, "prompt": "The end"}),
]


def batch_file(path: Path, lines: list[tuple[str, str, dict[str, Any]]]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"custom_id": c, "method": "POST", "url": u, "body": b}) + "\n"
            for c, u, b in lines
        )
    )
    return path


def run_batch(store: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script("textgen"), "run-batch", "--quiet", *args],
        env={**os.environ, "MODEL_STORE": str(store), **env},
        capture_output=True,
        text=True,
        check=False,
    )


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def same_answer(got: Any, want: Any) -> bool:
    """The same answer: equal but for log-probabilities (floats), which PyTorch float32 may
    round differently in another batch (README: its logits agree to 1e-4, its tokens exactly)."""
    if isinstance(want, float) and isinstance(got, float):
        return abs(got - want) <= 1e-4
    if isinstance(want, dict) and isinstance(got, dict):
        keys = want.keys() - {"id", "created"}
        return got.keys() - {"id", "created"} == keys and all(
            same_answer(got[k], want[k]) for k in keys
        )
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(map(same_answer, got, want))
    return bool(got == want)


def test_a_batch_answers_as_the_api_does_each_line_once_in_order(
    engine_store: Path, tmp_path: Path
) -> None:
    source = batch_file(tmp_path / "in.jsonl", LINES)
    output, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"

    done = run_batch(engine_store, "-i", str(source), "-o", str(output), "--errors", str(errors))

    assert done.returncode == 0, done.stderr
    assert "7 requests: 5 answered, 2 failed" in done.stderr
    answered, failed = read_lines(output), read_lines(errors)
    expected_order = [c for c, _, _ in LINES]
    assert [r["custom_id"] for r in answered] == [
        c for c in expected_order if c not in ("missing-model", "too-long")
    ]
    assert [r["custom_id"] for r in failed] == ["missing-model", "too-long"]
    assert len({r["id"] for r in answered + failed}) == len(LINES)
    # The API as the command is configured: the same environment, the same store.
    with TestClient(create_app(Settings(model_store=str(engine_store)))) as api:
        for record in answered + failed:
            _, url, body = next(line for line in LINES if line[0] == record["custom_id"])
            expected = api.post(url, json=body)
            assert record["response"]["status_code"] == expected.status_code
            assert record["error"] is None
            got, want = record["response"]["body"], expected.json()
            if expected.status_code == 200:  # PyTorch float32: the same tokens, logits to 1e-4
                assert same_answer(got, want)
            else:
                assert got == want  # OpenAI's error shape, the same message
    assert failed[0]["response"]["body"]["error"]["code"] == "model_not_found"
    for record in answered:  # each answer named by its request's id, as through the API
        response = record["response"]
        assert response["body"]["id"].endswith(f"-{response['request_id']}")
    # Live check: the comparison tells two answers apart.
    assert not same_answer(answered[0]["response"]["body"], answered[-1]["response"]["body"])


def test_without_an_errors_file_failures_stay_in_place(engine_store: Path, tmp_path: Path) -> None:
    source = batch_file(tmp_path / "in.jsonl", LINES)

    done = run_batch(engine_store, "-i", str(source), "-o", str(tmp_path / "out.jsonl"))

    assert done.returncode == 0, done.stderr
    records = read_lines(tmp_path / "out.jsonl")
    assert [r["custom_id"] for r in records] == [c for c, _, _ in LINES]
    assert [r["response"]["status_code"] for r in records] == [200, 200, 200, 404, 200, 400, 200]


def test_more_lines_than_the_engine_queues_wait_for_room(
    engine_store: Path, tmp_path: Path
) -> None:
    lines = [
        (f"line-{i}", "/v1/completions", {**COMPLETION, "prompt": f"Number {i}"}) for i in range(12)
    ]
    source = batch_file(tmp_path / "in.jsonl", lines)

    done = run_batch(
        engine_store,
        *("-i", str(source), "-o", str(tmp_path / "out.jsonl")),
        MAX_BATCH_SIZE="2",
        MAX_QUEUED_REQUESTS="1",
    )

    assert done.returncode == 0, done.stderr
    records = read_lines(tmp_path / "out.jsonl")
    assert [r["custom_id"] for r in records] == [c for c, _, _ in lines]
    assert {r["response"]["status_code"] for r in records} == {200}  # none turned away (429)


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("not json at all", "line 2: not JSON"),
        (json.dumps({"custom_id": "x", "url": "/v1/embeddings", "body": {}}), "line 2: url"),
        (json.dumps({"url": "/v1/completions", "body": COMPLETION}), "line 2: no custom_id"),
        (
            json.dumps({"custom_id": "ok", "url": "/v1/completions", "body": COMPLETION}),
            "line 2: custom_id 'ok' is used by an earlier line",
        ),
        (
            json.dumps(
                {
                    "custom_id": "s",
                    "url": "/v1/completions",
                    "body": {**COMPLETION, "prompt": "Hi", "stream": True},
                }
            ),
            "line 2: body.stream",
        ),
        (
            json.dumps(
                {"custom_id": "t", "url": "/v1/completions", "body": {"model": "m", "temp": 1}}
            ),
            "line 2: body.prompt",
        ),
        (
            json.dumps({"custom_id": "g", "method": "GET", "url": "/v1/completions"}),
            "line 2: method",
        ),
    ],
)
def test_a_bad_file_is_refused_before_anything_runs(
    engine_store: Path, tmp_path: Path, line: str, named: str
) -> None:
    good = json.dumps(
        {"custom_id": "ok", "url": "/v1/completions", "body": {**COMPLETION, "prompt": "Hi"}}
    )
    source = tmp_path / "in.jsonl"
    source.write_text(good + "\n" + line + "\n")

    done = run_batch(engine_store, "-i", str(source), "-o", str(tmp_path / "out.jsonl"))

    assert done.returncode == 1
    assert named in done.stderr
    assert not (tmp_path / "out.jsonl").exists()  # nothing ran, nothing written
    assert len(parse_batch([good])) == 1  # the good line alone is taken
