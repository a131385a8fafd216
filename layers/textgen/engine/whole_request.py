"""An engine for backends that generate a whole request in one call (TensorFlow's XLA loop):
it cannot admit rows mid-loop, but shares the queue, limits and backpressure of every engine."""

from __future__ import annotations

import time
from collections.abc import Callable

from textgen.engine.core import Engine
from textgen.engine.handle import FinishReason, SequenceOutput, TokenEvent
from textgen.engine.job import EngineLimits, Job
from textgen.errors import TextgenError

# What one prompt produced: its text, token ids and how it ended.
WholeOutput = tuple[str, list[int], FinishReason]
# (prompts, max new tokens, seconds left or None) -> per prompt, its output
GenerateWhole = Callable[[list[str], int, float | None], list[WholeOutput]]


class WholeRequestEngine(Engine):
    def __init__(
        self, name: str, generate: GenerateWhole, limits: EngineLimits, runtime: str
    ) -> None:
        super().__init__(name, limits, runtime)
        self._generate = generate
        self._running: Job | None = None

    def _running_rows(self) -> int:
        return self._running.rows if self._running else 0

    def _can_start(self, job: Job, admitted: list[Job]) -> bool:
        return self._running is None and not admitted

    def _cycle(self, admitted: list[Job]) -> None:
        for job in admitted:
            self._running = job
            try:
                left = None if job.deadline is None else max(job.deadline - time.monotonic(), 0.001)
                results = self._generate(job.prompts, job.max_new_tokens, left)
            finally:
                self._running = None
            self._record_step(job.rows)
            for index, (text, token_ids, reason) in enumerate(results):
                text, reason = _cut_at_stop(text, reason, job.sampling.stop)
                output = SequenceOutput(index, 0, token_ids, text, reason)
                job.handle.push(TokenEvent(index, text, tuple(token_ids), reason), output)

    def _abort_running(self, error: TextgenError) -> None:
        if self._running is not None:
            self._running.handle.fail(error)
            self._running = None


def _cut_at_stop(
    text: str, reason: FinishReason, stop: tuple[str, ...]
) -> tuple[str, FinishReason]:
    found = [i for s in stop if (i := text.find(s)) >= 0]
    return (text[: min(found)], "stop") if found else (text, reason)
