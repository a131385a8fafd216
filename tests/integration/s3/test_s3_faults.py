"""Faults around the model cache: S3 failing during a cold start while loaded models keep
answering, a cached file changed on local disk, and a disk too full for the next model."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from handlers.factory import create_app
from tests.support.s3_models import REQUEST, WEIGHTS, cached_versions, publish_models, s3_settings
from tests.support.s3_server import Fault, FaultProxy
from textgen.settings import Settings


def test_s3_failing_during_a_cold_start_leaves_loaded_models_answering(
    proxy: FaultProxy,
    direct_s3: Any,
    bucket: str,
    store_dir: Path,
    settings: Settings,
    tmp_path: Path,
) -> None:
    publish_models(direct_s3, store_dir, bucket)
    served = s3_settings(settings, bucket, tmp_path, s3_max_attempts=2)
    llama = {**REQUEST, "model_name": "llama-test"}
    with TestClient(create_app(served)) as client:
        assert client.post("/gpt2_model", json=REQUEST).status_code == 200  # loaded
        proxy.add_fault(Fault(count=10_000, method="GET", status=500))  # S3 down from now on
        with ThreadPoolExecutor(max_workers=4) as pool:
            cold = pool.submit(client.post, "/llama_model", json=llama)
            warm = [pool.submit(client.post, "/gpt2_model", json=REQUEST) for _ in range(6)]
            warm_statuses = [w.result().status_code for w in warm]
            cold_response = cold.result()
        proxy.faults.clear()  # S3 is back: the same cold model now loads
        recovered = client.post("/llama_model", json=llama)

    assert warm_statuses == [200] * 6
    assert cold_response.status_code == 503
    assert cold_response.json()["error"]["type"] == "store_unavailable"
    assert recovered.status_code == 200
    assert cached_versions(tmp_path, "llama-test")


def test_a_cached_file_changed_on_disk_is_refused_and_fetched_again(
    proxy: FaultProxy, gpt2_in_s3: Settings, tmp_path: Path
) -> None:
    with TestClient(create_app(gpt2_in_s3)) as first:
        original = first.post("/gpt2_model", json=REQUEST).json()["results"]
    (version,) = cached_versions(tmp_path, "gpt2-test")
    weights = version / WEIGHTS
    damaged = bytearray(weights.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte, the size unchanged
    weights.write_bytes(bytes(damaged))
    proxy.reset_log()

    with TestClient(create_app(gpt2_in_s3)) as second:  # a new process's first use of the copy
        again = second.post("/gpt2_model", json=REQUEST)

    assert again.status_code == 200
    assert again.json()["results"] == original
    assert proxy.log.gets(WEIGHTS), "the damaged file was fetched again"
    (refetched,) = cached_versions(tmp_path, "gpt2-test")
    assert (refetched / WEIGHTS).read_bytes() != bytes(damaged)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB file system for the model cache: smaller than the model (a real ENOSPC)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_is_a_clear_507_and_leaves_nothing_behind(
    proxy: FaultProxy, gpt2_in_s3: Settings, small_disk: Path
) -> None:
    on_small_disk = gpt2_in_s3.model_copy(update={"model_cache_dir": small_disk / "cache"})
    with TestClient(create_app(on_small_disk)) as client:
        response = client.post("/gpt2_model", json=REQUEST)
        health = client.get("/health")

    assert response.status_code == 507, response.text
    assert "is full" in response.json()["error"]["message"]
    assert health.status_code == 200
    leftovers = [p for p in (small_disk / "cache").rglob("*") if p.is_file()]
    assert all(p.name.endswith(".lock") for p in leftovers), leftovers
