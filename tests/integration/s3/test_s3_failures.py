"""S3 failures become clear JSON errors that say which failure it was; the service stays up."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from handlers.factory import create_app
from tests.support.s3_models import REQUEST, WEIGHTS, cached_versions, fill_command, s3_settings
from tests.support.s3_server import Fault, FaultProxy
from tests.support.servers import REPO_ROOT, console_script, free_port
from textgen.convert.onnx_export import has_current_export
from textgen.settings import Settings
from textgen.store import open_store


def post_and_check_health(
    settings: Settings, request: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    with TestClient(create_app(settings)) as app:
        response = app.post("/gpt2_model", json=request)
        assert app.get("/health").json()["status"] == "ok"
    return response.status_code, response.json()["error"]


def test_a_model_missing_from_the_bucket_is_404(
    proxy: FaultProxy, bucket: str, settings: Settings, tmp_path: Path
) -> None:
    status, error = post_and_check_health(s3_settings(settings, bucket, tmp_path), REQUEST)

    assert status == 404
    assert error["type"] == "model_not_found"


def test_a_missing_bucket_is_a_5xx_that_says_so(
    proxy: FaultProxy, settings: Settings, tmp_path: Path
) -> None:
    status, error = post_and_check_health(
        s3_settings(settings, "no-such-bucket-here", tmp_path), REQUEST
    )

    assert status == 503
    assert error["type"] == "store_unavailable"
    assert "bucket 'no-such-bucket-here' does not exist" in error["message"]


def test_denied_access_is_a_5xx_that_says_so(
    proxy: FaultProxy,
    gpt2_in_s3: Settings,
) -> None:
    proxy.add_fault(Fault(count=100, status=403, error_code="AccessDenied"))

    status, error = post_and_check_health(gpt2_in_s3, REQUEST)

    assert status == 503
    assert "access denied" in error["message"]


def test_an_unreachable_endpoint_is_a_5xx_that_says_so(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    unreachable = s3_settings(settings, "models", tmp_path, s3_max_attempts=2)

    status, error = post_and_check_health(unreachable, REQUEST)

    assert status == 503
    assert "cannot reach the S3 endpoint" in error["message"]


@pytest.mark.slow
def test_a_process_killed_mid_download_leaves_nothing_trusted(
    proxy: FaultProxy,
    bucket: str,
    store_dir: Path,
    tmp_path: Path,
    gpt2_in_s3: Settings,
) -> None:
    proxy.add_fault(Fault(count=100, path_contains=WEIGHTS, stall_seconds=30))
    fill = fill_command(bucket, tmp_path)
    worker = subprocess.Popen(fill, cwd=REPO_ROOT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not proxy.log.gets(WEIGHTS) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # the other files land meanwhile; the weights stall
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()

    assert proxy.log.gets(WEIGHTS), "the download never started"
    assert cached_versions(tmp_path, "gpt2-test") == []
    proxy.faults.clear()
    path = open_store(gpt2_in_s3.model_store, gpt2_in_s3).fetch("gpt2-test").path
    assert (path / WEIGHTS).read_bytes() == (store_dir / "gpt2-test" / WEIGHTS).read_bytes()
    assert [p.name for p in (tmp_path / "gpt2-test").iterdir()] == [path.name]


@pytest.mark.slow
@pytest.mark.usefixtures("export_cache")  # gpt2-test's export, kept
def test_textgen_publish_and_models_commands(
    proxy: FaultProxy, bucket: str, store_dir: Path, tmp_path: Path
) -> None:
    textgen = console_script("textgen")
    model = shutil.copytree(store_dir / "gpt2-test", tmp_path / "gpt2-test")
    plain = shutil.copytree(store_dir / "llama-test", tmp_path / "llama-test")
    published = subprocess.run(
        [textgen, "publish", str(model), f"s3://{bucket}/models/gpt2-test"],
        capture_output=True,
        text=True,
        check=False,
    )
    without_export = subprocess.run(
        [textgen, "publish", "--no-onnx", str(plain), f"s3://{bucket}/models/llama-test"],
        capture_output=True,
        text=True,
        check=False,
    )
    listed = subprocess.run(
        [textgen, "models", f"s3://{bucket}/models"], capture_output=True, text=True, check=False
    )
    refused = subprocess.run(
        [textgen, "publish", str(store_dir), f"s3://{bucket}/models/x"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert published.returncode == 0, published.stderr
    # The model's 5 files and its int8 export's 8, written first: the fast path by default.
    assert "wrote the ONNX export (int8)" in published.stderr
    assert "published 13 files" in published.stdout
    assert has_current_export(model)
    assert "uploading" in published.stderr  # the progress bar
    assert without_export.returncode == 0, without_export.stderr
    assert "published 5 files" in without_export.stdout
    assert not (plain / "onnx").exists()
    assert listed.stdout.splitlines() == ["gpt2-test\tgpt2\tpt", "llama-test\tllama\tpt"]
    assert refused.returncode == 1
    assert "not a model folder" in refused.stderr
