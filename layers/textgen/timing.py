"""Throughput and timing figures reported with every generation."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Throughput:
    iterations_per_second: float  # prompts per second of generation, as the original app reported
    tokens_per_second: float


@dataclass(frozen=True)
class Timing:
    load_seconds: float  # fetching and loading the model, when this request did
    fetch_seconds: float  # of which getting its files from the store
    download_bytes: int  # bytes this request downloaded from the store
    queue_seconds: float  # waiting for the engine to take it (its batch was full)
    generate_seconds: float  # from the engine taking it to its last token
    total_seconds: float
    model_loaded: bool  # whether this request paid for loading the model


def throughput(prompts: int, tokens: int, seconds: float) -> Throughput:
    seconds = max(seconds, 1e-9)
    return Throughput(iterations_per_second=prompts / seconds, tokens_per_second=tokens / seconds)


class Stopwatch:
    def __init__(self) -> None:
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self._start
