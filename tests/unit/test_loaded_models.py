from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from textgen.loaded_models import LoadedModels


def test_least_recently_used_goes_first() -> None:
    loaded: list[str] = []

    def loader(key: str) -> str:
        loaded.append(key)
        return key.upper()

    models: LoadedModels[str, str] = LoadedModels(loader, capacity=2)

    models.get("a")
    models.get("b")
    models.get("a")
    models.get("c")  # evicts b

    assert models.loaded_keys() == ["a", "c"]
    assert models.get("a") == ("A", None)
    value, seconds = models.get("b")
    assert value == "B" and seconds is not None
    assert loaded == ["a", "b", "c", "b"]


def test_concurrent_misses_load_once() -> None:
    calls = 0
    gate = threading.Event()

    def slow_loader(key: str) -> str:
        nonlocal calls
        calls += 1
        gate.wait(5)
        return key

    models: LoadedModels[str, str] = LoadedModels(slow_loader, capacity=1)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(models.get, "m") for _ in range(8)]
        time.sleep(0.2)
        gate.set()
        results = [f.result() for f in futures]

    assert calls == 1
    assert [value for value, _ in results] == ["m"] * 8
    assert sum(seconds is not None for _, seconds in results) == 1


def test_failed_load_is_not_cached() -> None:
    attempts = 0

    def flaky(key: str) -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise OSError("disk hiccup")
        return key

    models: LoadedModels[str, str] = LoadedModels(flaky, capacity=1)
    with pytest.raises(OSError):
        models.get("m")

    assert models.get("m")[0] == "m"
    assert models.loads == 1


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LoadedModels(lambda key: key, capacity=0)
