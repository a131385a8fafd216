"""Checks of the step engine that every runner (PyTorch, ONNX Runtime) must pass."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from textgen.backends.step_backend import StepBackend
from textgen.engine import Job, SamplingParams
from textgen.engine.step_engine import StepEngine, StepRunner

PROMPTS = ["Hello there", "The quick brown fox jumps over the lazy dog", "Numbers: 1, 2, 3, 4"]


class RecordingRunner:
    """A TorchRunner that records each step's batch size and can be held at a gate."""

    def __init__(self, inner: StepRunner) -> None:
        self.inner = inner
        self.batch_sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def add_rows(self, prompts: list[list[int]], width: int, all_logits: bool) -> Any:
        return self.inner.add_rows(prompts, width, all_logits)

    def step(self, tokens: list[int]) -> np.ndarray:
        self.gate.wait(timeout=60)
        self.batch_sizes.append(len(tokens))
        return self.inner.step(tokens)

    def move_row(self, source: int, target: int) -> None:
        self.inner.move_row(source, target)

    def truncate(self, rows: int) -> None:
        self.inner.truncate(rows)


def job(
    backend: StepBackend,
    prompts: list[str],
    max_tokens: int = 8,
    deadline: float | None = None,
    **sampling: Any,
) -> Job:
    ids = backend.encode(prompts, max_tokens)
    return Job(prompts, ids, max_tokens, SamplingParams(**sampling).validate(), deadline)


def join_mid_decode(backend: StepBackend, inner: StepRunner) -> list[list[int]]:
    """A long request decodes a few steps alone on `inner` (a fresh runner of the backend's
    model); two more (mixed prompt lengths, mixed max_tokens) join it mid-way. The tokens of
    all three."""
    runner = RecordingRunner(inner)
    steps = StepEngine(
        "join",
        runner,
        backend.engine._tokenizer,
        backend.engine._eos_ids,
        backend.engine.limits,
        "test",
    )
    permits = threading.Semaphore(0)
    original_step = runner.step

    def stepped(tokens: list[int]) -> np.ndarray:
        permits.acquire(timeout=60)
        return original_step(tokens)

    runner.step = stepped  # type: ignore[method-assign]
    try:
        first = steps.submit(job(backend, [PROMPTS[1]], 24))
        for _ in range(5):
            permits.release()
        while len(runner.batch_sizes) < 5:
            time.sleep(0.01)
        joined = [
            steps.submit(job(backend, [PROMPTS[0]], 10)),
            steps.submit(job(backend, [PROMPTS[2]], 16)),
        ]
        for _ in range(100):
            permits.release()
        outputs = [h.result(60)[0].token_ids for h in [first, *joined]]
    finally:
        for _ in range(100):
            permits.release()
        steps.close(30)
    assert runner.batch_sizes[:5] == [1] * 5 and max(runner.batch_sizes) == 3  # really joined
    return outputs
