"""Fixtures of the S3 tests: moto's S3 server on loopback, a fault-injecting proxy before it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.s3_models import publish_models, s3_settings
from tests.support.s3_server import FaultProxy, moto_server
from textgen.settings import Settings


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and region for the local S3 server; nothing reaches a real AWS account."""
    for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


@pytest.fixture
def proxy(moto_url: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The service's S3 endpoint: a fault-injecting, request-counting proxy before moto."""
    with FaultProxy(moto_url) as fault_proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", fault_proxy.url)
        yield fault_proxy


@pytest.fixture
def direct_s3(moto_url: str, aws_env: None) -> Any:
    """A client straight to moto, for arranging the bucket behind the service's back."""
    return boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")


@pytest.fixture
def bucket(direct_s3: Any) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    direct_s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def gpt2_in_s3(
    proxy: FaultProxy,
    direct_s3: Any,
    bucket: str,
    store_dir: Path,
    settings: Settings,
    tmp_path: Path,
) -> Settings:
    """gpt2-test published to a fresh bucket; settings that serve it through the proxy, with the
    cache in tmp_path."""
    publish_models(direct_s3, store_dir, bucket, "gpt2-test")
    return s3_settings(settings, bucket, tmp_path)
