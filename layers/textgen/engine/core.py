"""What every engine shares: a bounded queue of jobs, one thread that runs them, the limits
checked at submission, statistics, and a drain on shutdown."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field

from textgen.engine.handle import RequestHandle, SequenceOutput
from textgen.engine.job import EngineLimits, Job
from textgen.errors import InvalidRequest, Overloaded, ShuttingDown, TextgenError

_RATE_WINDOW_S = 10.0


class GenerationFailed(TextgenError):
    """The model failed while generating (for example, out of memory); the engine recovered."""

    kind = "generation_failed"


@dataclass(frozen=True)
class EngineStats:
    running_sequences: int
    queued_requests: int
    steps_per_second: float  # over the last ten seconds
    steps: int  # since the model was loaded
    runtime: str  # what runs the model, e.g. "onnxruntime-int8" or "torch-float32"
    # Since the model was loaded: how many steps ran with each number of rows.
    steps_by_rows: dict[int, int] = field(default_factory=dict)
    kv_cache_usage: float = 0.0  # of the KV cache's token budget, held by the running rows


class Engine(ABC):
    """Owns one loaded model's generation. Callers submit jobs from any thread; one thread of
    the engine's own runs them, so a request never holds a thread of the caller's while waiting."""

    def __init__(self, name: str, limits: EngineLimits, runtime: str) -> None:
        self.name = name
        self.limits = limits
        self.runtime = runtime
        self._condition = threading.Condition()
        self._waiting: deque[Job] = deque()
        # Background jobs (batch files' lines) start only when no interactive job waits.
        self._background: deque[Job] = deque()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._steps: deque[float] = deque()
        self._step_count = 0
        self._steps_by_rows: dict[int, int] = {}

    # ---- callers
    def submit(self, job: Job) -> RequestHandle:
        """Queue a job; refuse it at once if it could never run, the queue is full or the engine
        is shutting down."""
        self.check_fits(job)
        with self._condition:
            if self._closing:
                raise ShuttingDown("the service is shutting down and takes no new requests")
            queue = self._background if job.background else self._waiting
            if len(queue) >= self.limits.max_queued_requests:
                raise Overloaded(
                    f"{len(queue)} requests are already waiting for model '{self.name}'; "
                    "retry shortly",
                    retry_after=1,
                )
            queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name=f"engine-{self.name}", daemon=True
                )
                self._thread.start()
            self._condition.notify()
        return job.handle

    def check_fits(self, job: Job) -> None:
        """Refuse a job that could not run even alone, before it takes a place in the queue."""
        if job.rows > self.limits.max_batch_size:
            raise InvalidRequest(
                f"{job.rows} prompts is more than the {self.limits.max_batch_size} sequences "
                "this model decodes at once (MAX_BATCH_SIZE)",
                field="prompts",
            )
        row_limit = self.limits.max_row_tokens
        if row_limit is not None and job.width > row_limit:
            raise InvalidRequest(
                f"a prompt plus max_tokens may hold at most {row_limit} tokens here (the compiled "
                f"KV cache's width), this request needs {job.width}; ask for fewer tokens",
                field="max_tokens",
            )
        needed = job.rows * job.width
        if needed > self.limits.kv_token_budget:
            raise InvalidRequest(
                f"this request needs {needed} tokens of KV cache ({job.rows} prompts x "
                f"(longest prompt + max_tokens = {job.width})), more than this model's budget of "
                f"{self.limits.kv_token_budget} (KV_CACHE_MAX_BYTES); use fewer or shorter "
                "prompts or a smaller max_tokens",
                field="max_tokens",
            )

    def stats(self) -> EngineStats:
        now = time.monotonic()
        with self._condition:
            while self._steps and self._steps[0] < now - _RATE_WINDOW_S:
                self._steps.popleft()
            window = min(_RATE_WINDOW_S, now - self._steps[0]) if self._steps else 0.0
            rate = len(self._steps) / window if window > 0 else 0.0
            return EngineStats(
                self._running_rows(),
                len(self._waiting) + len(self._background),
                rate,
                self._step_count,
                self.runtime,
                dict(self._steps_by_rows),
                self._kv_usage(),
            )

    def close(self, timeout: float | None = None) -> bool:
        """Take no new jobs; finish the queued and running ones. False if they outlast timeout."""
        with self._condition:
            self._closing = True
            thread = self._thread
            self._condition.notify_all()
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def abort(self, error: TextgenError) -> None:
        """Fail every queued and running job with `error` (after a drain ran out of time)."""
        with self._condition:
            waiting = [*self._waiting, *self._background]
            self._waiting, self._background = deque(), deque()
        for job in waiting:
            job.handle.fail(error)
        self._abort_running(error)

    # ---- the engine's thread
    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._waiting and not self._background and not self._running_rows():
                    if self._closing:
                        self._thread = None
                        return
                    self._condition.wait()
                admitted = self._admit()
            try:
                self._cycle(admitted)
            except Exception as exc:  # a failing model must not take the engine down
                error = GenerationFailed(f"generation failed: {exc}")
                for job in admitted:
                    job.handle.fail(error)
                self._abort_running(error)

    def _admit(self) -> list[Job]:
        """Waiting jobs to start now, in arrival order, background ones only once every
        interactive one has started; called with the lock held."""
        admitted: list[Job] = []
        if self._admit_from(self._waiting, admitted):
            self._admit_from(self._background, admitted)
        return admitted

    def _admit_from(self, queue: deque[Job], admitted: list[Job]) -> bool:
        """Admit `queue`'s jobs in order while they fit; whether it emptied."""
        while queue:
            job = queue[0]
            if job.handle.cancelled:
                queue.popleft()
                for index, ids in enumerate(job.prompt_ids or [[]] * job.rows):
                    job.handle.push(
                        None, SequenceOutput(index, len(ids), finish_reason="cancelled")
                    )
                continue
            if not self._can_start(job, admitted):
                return False
            admitted.append(queue.popleft())
            job.handle.started_at = time.monotonic()
        return True

    def _record_step(self, rows: int) -> None:
        now = time.monotonic()
        with self._condition:
            self._steps.append(now)
            self._step_count += 1
            self._steps_by_rows[rows] = self._steps_by_rows.get(rows, 0) + 1
            while self._steps[0] < now - _RATE_WINDOW_S:  # bounded, whoever asks for stats
                self._steps.popleft()

    @abstractmethod
    def _running_rows(self) -> int:
        """Rows being generated now."""

    def _kv_usage(self) -> float:
        """The share of the KV cache's budget in use (0 where the engine keeps none between
        steps)."""
        return 0.0

    @abstractmethod
    def _can_start(self, job: Job, admitted: list[Job]) -> bool:
        """Whether `job` can start beside what runs and what this step already admitted."""

    @abstractmethod
    def _cycle(self, admitted: list[Job]) -> None:
        """Start the admitted jobs and advance the running ones by one step."""

    @abstractmethod
    def _abort_running(self, error: TextgenError) -> None:
        """Fail the running jobs and free what they hold."""
