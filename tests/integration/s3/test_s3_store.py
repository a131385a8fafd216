"""Models served from S3: moto's server on loopback, reached through a fault-injecting proxy."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from fastapi.testclient import TestClient

from handlers.factory import create_app
from tests.support.s3_models import (
    REQUEST,
    WEIGHTS,
    cached_versions,
    fill_command,
    publish_models,
    s3_settings,
)
from tests.support.s3_server import Fault, FaultProxy
from tests.support.servers import REPO_ROOT
from textgen.errors import StoreUnavailable
from textgen.families import Family, Framework
from textgen.service import GenerationRequest, GenerationService
from textgen.settings import Settings
from textgen.store import open_store
from textgen.store.publish import publish


def test_publish_then_serve_gives_what_the_local_store_gives(
    client: TestClient,
    proxy: FaultProxy,
    direct_s3: Any,
    bucket: str,
    store_dir: Path,
    settings: Settings,
    tmp_path: Path,
) -> None:
    publish_models(direct_s3, store_dir, bucket)
    with TestClient(create_app(s3_settings(settings, bucket, tmp_path))) as from_s3:
        gpt2 = from_s3.post("/gpt2_model", json=REQUEST)
        llama = from_s3.post("/llama_model", json={**REQUEST, "model_name": "llama-test"})
        models = from_s3.get("/models").json()

    assert gpt2.status_code == 200, gpt2.text
    assert gpt2.json()["results"] == client.post("/gpt2_model", json=REQUEST).json()["results"]
    assert llama.status_code == 200, llama.text
    assert {m["name"]: (m["family"], m["frameworks"]) for m in models["models"]} == {
        "gpt2-test": ("gpt2", ["pt"]),
        "llama-test": ("llama", ["pt"]),
    }
    manifest = json.loads(
        direct_s3.get_object(Bucket=bucket, Key="models/gpt2-test/manifest.json")["Body"].read()
    )
    entry = manifest["files"][WEIGHTS]
    assert entry["size"] == (store_dir / "gpt2-test" / WEIGHTS).stat().st_size
    assert len(entry["sha256"]) == 64
    assert manifest["family"] == "gpt2"


def test_warm_requests_do_not_touch_s3(
    proxy: FaultProxy,
    gpt2_in_s3: Settings,
) -> None:
    with TestClient(create_app(gpt2_in_s3)) as from_s3:
        cold = from_s3.post("/gpt2_model", json=REQUEST).json()
        cold_requests = list(proxy.log.requests)
        proxy.reset_log()
        warm = from_s3.post("/gpt2_model", json=REQUEST).json()

    assert cold["timing"]["model_loaded"] is True
    assert any(WEIGHTS in path for _, path in cold_requests)
    assert warm["timing"]["model_loaded"] is False
    assert proxy.log.requests == []


@pytest.mark.slow
def test_a_new_process_with_a_warm_disk_cache_downloads_nothing(
    proxy: FaultProxy,
    bucket: str,
    tmp_path: Path,
    gpt2_in_s3: Settings,
) -> None:
    fill = fill_command(bucket, tmp_path)
    first = subprocess.run(fill, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    proxy.reset_log()

    second = subprocess.run(fill, cwd=REPO_ROOT, capture_output=True, text=True, check=False)

    assert second.returncode == 0, second.stderr
    assert first.stdout == second.stdout  # the same local folder
    # The freshness check reads the manifest once; no model file is downloaded again.
    assert [p for p in proxy.log.gets() if "manifest.json" not in p] == []
    assert len(proxy.log.gets("manifest.json")) == 1


def test_eight_concurrent_cold_requests_download_each_object_once(
    proxy: FaultProxy,
    bucket: str,
    store_dir: Path,
    gpt2_in_s3: Settings,
) -> None:
    service = GenerationService(gpt2_in_s3, open_store(gpt2_in_s3.model_store, gpt2_in_s3))
    request = GenerationRequest(
        model_name="gpt2-test", prompts=["Hi"], family=Family.GPT2, max_tokens=2
    )

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: service.generate(request), range(8)))

    assert sum(r.timing.model_loaded for r in results) == 1
    assert_each_object_downloaded_once(proxy, store_dir / "gpt2-test", bucket)
    # Several ranged GETs (multipart download) for the weights, which are over one part.
    assert len(proxy.log.gets(WEIGHTS)) >= 2


@pytest.mark.slow
def test_worker_processes_sharing_a_cache_download_once(
    proxy: FaultProxy,
    bucket: str,
    store_dir: Path,
    tmp_path: Path,
    gpt2_in_s3: Settings,
) -> None:
    fill = fill_command(bucket, tmp_path)
    workers = [subprocess.Popen(fill, cwd=REPO_ROOT, stdout=subprocess.PIPE) for _ in range(3)]
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]

    assert all(worker.returncode == 0 for worker in workers)
    assert len(set(outputs)) == 1
    assert_each_object_downloaded_once(proxy, store_dir / "gpt2-test", bucket)


def test_a_corrupt_object_is_refused_not_cached_then_served_once_fixed(
    direct_s3: Any,
    bucket: str,
    store_dir: Path,
    tmp_path: Path,
    gpt2_in_s3: Settings,
) -> None:
    good = (store_dir / "gpt2-test" / WEIGHTS).read_bytes()
    corrupt = good[:-16] + bytes(16)  # same size, different bytes
    key = f"models/gpt2-test/{WEIGHTS}"
    direct_s3.put_object(Bucket=bucket, Key=key, Body=corrupt)

    with TestClient(create_app(gpt2_in_s3)) as from_s3:
        refused = from_s3.post("/gpt2_model", json=REQUEST)
        nothing_cached = cached_versions(tmp_path, "gpt2-test")
        leftovers = list((tmp_path / "gpt2-test").glob("*"))
        direct_s3.put_object(Bucket=bucket, Key=key, Body=good)
        served = from_s3.post("/gpt2_model", json=REQUEST)

    assert refused.status_code == 502
    error = refused.json()["error"]
    assert error["type"] == "artifact_corrupt"
    assert WEIGHTS in error["message"]
    assert nothing_cached == []
    assert leftovers == []
    assert served.status_code == 200, served.text
    assert len(cached_versions(tmp_path, "gpt2-test")) == 1


@pytest.mark.parametrize(("status", "code"), [(503, "SlowDown"), (500, "InternalError")])
def test_throttling_and_server_errors_are_retried(
    proxy: FaultProxy,
    status: int,
    code: str,
    gpt2_in_s3: Settings,
) -> None:
    proxy.add_fault(Fault(count=2, path_contains="manifest.json", status=status, error_code=code))
    proxy.add_fault(Fault(count=3, path_contains=WEIGHTS, status=status, error_code=code))

    with TestClient(create_app(gpt2_in_s3)) as from_s3:
        response = from_s3.post("/gpt2_model", json=REQUEST)

    assert response.status_code == 200, response.text
    assert all(fault.count == 0 for fault in proxy.faults)
    assert len(proxy.log.gets("manifest.json")) == 3


def test_a_connection_dropped_mid_object_is_resumed_and_verified(
    proxy: FaultProxy,
    store_dir: Path,
    tmp_path: Path,
    gpt2_in_s3: Settings,
) -> None:
    proxy.add_fault(Fault(count=2, path_contains=WEIGHTS, drop_after=100_000))

    with TestClient(create_app(gpt2_in_s3)) as from_s3:
        response = from_s3.post("/gpt2_model", json=REQUEST)

    assert response.status_code == 200, response.text
    assert proxy.faults[0].count == 0
    (version,) = cached_versions(tmp_path, "gpt2-test")
    assert (version / WEIGHTS).read_bytes() == (store_dir / "gpt2-test" / WEIGHTS).read_bytes()


def test_a_model_over_the_disk_budget_fails_before_any_download(
    proxy: FaultProxy,
    gpt2_in_s3: Settings,
) -> None:
    tight = gpt2_in_s3.model_copy(update={"model_cache_max_bytes": 1_000_000})

    with TestClient(create_app(tight)) as from_s3:
        response = from_s3.post("/gpt2_model", json=REQUEST)
        health = from_s3.get("/health")

    assert response.status_code == 507
    assert response.json()["error"]["type"] == "cache_budget_exceeded"
    assert "MODEL_CACHE_MAX_BYTES" in response.json()["error"]["message"]
    assert [p for p in proxy.log.gets() if "manifest.json" not in p] == []
    assert health.status_code == 200


def test_least_recently_used_models_are_evicted_from_disk(
    proxy: FaultProxy,
    direct_s3: Any,
    bucket: str,
    store_dir: Path,
    settings: Settings,
    tmp_path: Path,
) -> None:
    third = tmp_path / "gpt2-third"
    shutil.copytree(store_dir / "gpt2-other-seed", third)
    (third / "note.txt").write_text("a different model version")
    publish_models(direct_s3, store_dir, bucket, "gpt2-test", "gpt2-other-seed")
    publish(third, f"s3://{bucket}/models/gpt2-third", direct_s3, TransferConfig())
    size = sum(f.stat().st_size for f in (store_dir / "gpt2-test").iterdir())
    budget = s3_settings(
        settings, bucket, tmp_path / "cache", model_cache_max_bytes=int(size * 2.5)
    )
    store = open_store(budget.model_store, budget)

    cache = tmp_path / "cache"
    # Before each use, everything cached so far is made a minute older: each use is then
    # strictly the latest, whatever the file system's timestamp resolution, with no sleeping.
    store.fetch("gpt2-test")
    age_cache(cache)
    store.fetch("gpt2-other-seed")
    age_cache(cache)
    store.fetch("gpt2-test")  # now the most recently used
    age_cache(cache)
    store.fetch("gpt2-third")  # makes room by evicting gpt2-other-seed

    assert cached_versions(cache, "gpt2-test")
    assert cached_versions(cache, "gpt2-other-seed") == []
    assert cached_versions(cache, "gpt2-third")


@pytest.mark.slow
def test_a_republished_model_is_picked_up_by_the_next_process(
    direct_s3: Any,
    bucket: str,
    store_dir: Path,
    tmp_path: Path,
    gpt2_in_s3: Settings,
) -> None:
    with TestClient(create_app(gpt2_in_s3)) as first_instance:
        before = first_instance.post("/gpt2_model", json=REQUEST).json()["results"]
    publish(
        store_dir / "gpt2-other-seed",
        f"s3://{bucket}/models/gpt2-test",
        direct_s3,
        TransferConfig(),
    )

    with TestClient(create_app(gpt2_in_s3)) as next_instance:
        after = next_instance.post("/gpt2_model", json=REQUEST).json()["results"]

    assert after != before
    assert len(cached_versions(tmp_path, "gpt2-test")) == 1


def test_a_manifest_with_only_files_is_enough(
    direct_s3: Any,
    bucket: str,
    gpt2_in_s3: Settings,
) -> None:
    key = "models/gpt2-test/manifest.json"
    manifest = json.loads(direct_s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    direct_s3.put_object(Bucket=bucket, Key=key, Body=json.dumps({"files": manifest["files"]}))

    with TestClient(create_app(gpt2_in_s3)) as from_s3:
        models = from_s3.get("/models").json()["models"]
        response = from_s3.post("/gpt2_model", json=REQUEST)

    assert models == [{"name": "gpt2-test", "family": "gpt2", "frameworks": ["pt"]}]
    assert response.status_code == 200, response.text


def test_preloaded_models_are_ready_before_the_first_request(gpt2_in_s3: Settings) -> None:
    preload = gpt2_in_s3.model_copy(update={"preload_models": [("gpt2-test", Framework.PYTORCH)]})

    with TestClient(create_app(preload)) as from_s3:
        loaded = from_s3.get("/health").json()["loaded_models"]
        first = from_s3.post("/gpt2_model", json=REQUEST).json()

    assert loaded == ["gpt2-test:pt"]
    assert first["timing"]["model_loaded"] is False


@pytest.mark.parametrize("sole_model", [True, False])
def test_a_bucket_holding_one_model_has_it_preloaded_unnamed(
    gpt2_in_s3: Settings, sole_model: bool
) -> None:
    settings = gpt2_in_s3.model_copy(update={"preload_sole_model": sole_model})

    with TestClient(create_app(settings)) as from_s3:
        loaded = from_s3.get("/health").json()["loaded_models"]
        first = from_s3.post("/gpt2_model", json=REQUEST).json()

    assert loaded == (["gpt2-test:pt"] if sole_model else [])
    assert first["timing"]["model_loaded"] is not sole_model


@pytest.mark.parametrize("named", [False, True])
def test_a_store_failing_at_start_stops_a_server_only_for_a_named_preload(
    proxy: FaultProxy, gpt2_in_s3: Settings, named: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Refused at start (as while a new role's permissions propagate): the store's sole model,
    # asked for by no one, is left to the first request; a model PRELOAD_MODELS names fails the
    # start (the check can fail: the same fault, raised).
    update: dict[str, Any] = {"preload_sole_model": True}
    if named:
        update["preload_models"] = [("gpt2-test", Framework.PYTORCH)]
    settings = gpt2_in_s3.model_copy(update=update)
    proxy.add_fault(Fault(count=100, status=403, error_code="AccessDenied"))

    if named:
        with pytest.raises(StoreUnavailable, match="access denied"):
            create_app(settings)
        return
    with caplog.at_level(logging.ERROR, logger="textgen.service"):
        app = create_app(settings)
    proxy.faults.clear()  # the store answers again
    with TestClient(app) as from_s3:
        loaded = from_s3.get("/health").json()["loaded_models"]
        first = from_s3.post("/gpt2_model", json=REQUEST)

    assert "listing the store's models to preload failed" in caplog.text
    assert loaded == []
    assert first.status_code == 200, first.text
    assert first.json()["timing"]["model_loaded"] is True


def age_cache(cache: Path, seconds: float = 60) -> None:
    for marker in cache.glob("*/*/.complete"):
        used = marker.stat().st_mtime - seconds
        os.utime(marker, (used, used))


def assert_each_object_downloaded_once(proxy: FaultProxy, model_dir: Path, bucket: str) -> None:
    for file in model_dir.iterdir():
        key = f"/{bucket}/models/{model_dir.name}/{file.name}"
        assert proxy.log.body_bytes[key] == file.stat().st_size, key


def test_a_model_is_fetched_with_what_its_runtime_reads(
    proxy: FaultProxy,
    direct_s3: Any,
    bucket: str,
    onnx_store: Path,
    settings: Settings,
    tmp_path: Path,
) -> None:
    # Published with its PyTorch weights and its ONNX export (as `textgen publish` does).
    publish(
        onnx_store / "gpt2-int8", f"s3://{bucket}/models/gpt2-int8", direct_s3, TransferConfig()
    )
    request = {**REQUEST, "model_name": "gpt2-int8"}
    cache = tmp_path / "cache"
    fetched: dict[str, list[str]] = {}
    for runtime in ("onnx", "torch"):
        proxy.reset_log()
        chosen = s3_settings(settings, bucket, cache, cpu_runtime=runtime)
        with TestClient(create_app(chosen)) as from_s3:
            answer = from_s3.post("/gpt2_model", json=request)
            assert answer.status_code == 200, answer.text
            engine = from_s3.get("/health").json()["engines"]["gpt2-int8:pt"]
            assert engine["runtime"].startswith("onnxruntime" if runtime == "onnx" else "torch")
        fetched[runtime] = [p.split("/gpt2-int8/", 1)[1] for p in proxy.log.gets("/gpt2-int8/")]

    assert WEIGHTS not in fetched["onnx"] and "onnx/model.onnx.data" in fetched["onnx"]
    assert WEIGHTS in fetched["torch"]  # live check: the log sees the weights when fetched
    assert not [p for p in fetched["torch"] if p.startswith("onnx/")]
    # Each runtime's files are a cached version of their own; neither removed the other.
    versions = cached_versions(cache, "gpt2-int8")
    assert len(versions) == 2
    assert {(v / WEIGHTS).exists() for v in versions} == {True, False}
