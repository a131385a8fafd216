"""Batch files and their outputs as the Batch API's tests build and read them."""

from __future__ import annotations

import json
import time
from typing import Any

import openai

FINAL = {"completed", "failed", "expired", "cancelled"}


def completion_line(custom_id: str, model: str, prompt: str, max_tokens: int = 6) -> str:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": "/v1/completions", "body": body}
    )


def chat_line(custom_id: str, model: str, content: str, max_tokens: int = 6) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    )


def jsonl(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def wait_until_final(client: openai.OpenAI, batch_id: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in FINAL:
            return batch
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} is still {batch.status} after {timeout} s")
        time.sleep(0.2)


def output_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines()]


def by_custom_id(batch: Any, client: openai.OpenAI) -> dict[str, list[dict[str, Any]]]:
    """Every output and error line of a finished batch, by custom_id (a list: each should
    hold one line)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for line in [
        *output_lines(client, batch.output_file_id),
        *output_lines(client, batch.error_file_id),
    ]:
        found.setdefault(line["custom_id"], []).append(line)
    return found
