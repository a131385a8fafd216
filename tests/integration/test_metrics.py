"""Metrics of concurrent requests: each record carries its own request's model and figures."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)
from fastapi.testclient import TestClient

# Each model is asked with its own number of prompts, so a record's Prompts tells whose it is.
JOBS = [("/gpt2_model", "gpt2-test", 1), ("/llama_model", "llama-test", 2)] * 8


@pytest.fixture
def slow_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widen the window between adding a metric and flushing, where requests could interleave:
    shared metric state then mixes records every time, not once in a while."""
    add_metric = AmazonCloudWatchEMFProvider.add_metric

    def slow_add_metric(self: AmazonCloudWatchEMFProvider, *args: Any, **kwargs: Any) -> None:
        add_metric(self, *args, **kwargs)
        time.sleep(0.01)

    monkeypatch.setattr(AmazonCloudWatchEMFProvider, "add_metric", slow_add_metric)


def test_concurrent_requests_emit_records_with_their_own_dimensions(
    client: TestClient, capfd: pytest.CaptureFixture[str], slow_metrics: None
) -> None:
    client.post("/llama_model", json={"model_name": "llama-test", "prompts": ["warm"]})
    client.post("/gpt2_model", json={"model_name": "gpt2-test", "prompts": ["warm"]})
    capfd.readouterr()

    def call(job: tuple[str, str, int]) -> int:
        path, model, prompts = job
        body = {"model_name": model, "prompts": ["Hello"] * prompts, "max_tokens": 4}
        return client.post(path, json=body).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(call, JOBS))
    records = [
        json.loads(line)
        for line in capfd.readouterr().out.splitlines()
        if line.startswith('{"_aws"')
    ]

    assert statuses == [200] * len(JOBS)
    assert len(records) == len(JOBS)
    expected = {"gpt2-test": [1.0], "llama-test": [2.0]}
    assert sorted(r["model"] for r in records) == sorted(model for _, model, _ in JOBS)
    # Live check: both models appear, so a mix-up would show as a wrong Prompts figure.
    assert {r["model"] for r in records} == set(expected)
    for record in records:
        assert record["Prompts"] == expected[record["model"]], record
        names = [m["Name"] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
        assert names == ["Prompts", "TokensPerSecond"], record
