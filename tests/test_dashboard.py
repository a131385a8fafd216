"""docs/grafana-dashboard.json: valid JSON whose every panel query names metrics that /metrics
exposes (scraped from the app after a request), and that shows every metric the service counts."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from handlers.factory import create_app
from tests.support.servers import REPO_ROOT
from textgen.settings import Settings

DASHBOARD = REPO_ROOT / "docs" / "grafana-dashboard.json"
# Metric names in a PromQL expression: ours and the process' own (functions and labels are not).
METRIC = re.compile(r"\b(?:textgen|process)_[a-z0-9_]+\b")


def queried_metrics(dashboard: dict[str, Any]) -> set[str]:
    return {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in METRIC.findall(target["expr"])
    }


def unknown_metrics(dashboard: dict[str, Any], exposed: set[str]) -> set[str]:
    return queried_metrics(dashboard) - exposed


@pytest.fixture(scope="module")
def exposed(settings: Settings) -> set[str]:
    with TestClient(create_app(settings)) as client:
        client.post(
            "/gpt2_model", json={"model_name": "gpt2-test", "prompts": ["Hi"], "max_tokens": 2}
        )
        text = client.get("/metrics").text
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def test_every_panel_query_names_an_exposed_metric(exposed: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())

    assert dashboard["panels"] and all(panel["targets"] for panel in dashboard["panels"])
    assert unknown_metrics(dashboard, exposed) == set()
    # Live check: a misspelled metric is caught.
    dashboard["panels"][0]["targets"][0]["expr"] = "rate(textgen_request_total[5m])"
    assert unknown_metrics(dashboard, exposed) == {"textgen_request_total"}


def test_the_dashboard_shows_every_metric_the_service_counts(exposed: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    shown = {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in queried_metrics(dashboard)}
    ours = {
        re.sub(r"_(bucket|sum|count|total|created)$", "", n)
        for n in exposed
        if n.startswith("textgen_")
    }

    assert ours <= shown, sorted(ours - shown)
