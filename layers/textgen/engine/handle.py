"""A submitted request as its caller sees it: results (or a stream of tokens) arriving from the
engine's thread, to a blocking caller or an asyncio one, and a way to cancel it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["length", "stop", "time_limit", "cancelled"]


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()  # the most likely alternatives: (token id, logprob)


@dataclass(frozen=True)
class TokenEvent:
    """Progress of one prompt (`index`) of a request: new text, and how it ended if it did."""

    index: int
    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason | None = None
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass
class SequenceOutput:
    """What one prompt of a request produced."""

    index: int
    prompt_tokens: int
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: FinishReason = "length"
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob | None] | None = None

    @property
    def tokens(self) -> int:
        """How many tokens it generated."""
        return len(self.token_ids)


class RequestHandle:
    """Shared by the engine thread (which pushes) and the caller (which waits or streams)."""

    def __init__(self, rows: int, stream: bool = False) -> None:
        self.rows = rows
        self.stream_requested = stream
        self._lock = threading.Lock()
        self._events: deque[TokenEvent] = deque()
        self._outputs: list[SequenceOutput | None] = [None] * rows
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._cancelled = threading.Event()
        self._wakeups: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None  # when the engine admitted it
        self.first_token_at: float | None = None  # when a row of it made its first token
        self.finished_at: float | None = None
        self._on_done: list[Callable[[RequestHandle], None]] = []
        self._ended = False  # finished or failed (set before _done, which waiters watch)

    # ---- the engine's side
    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def push(
        self, event: TokenEvent | None, output: SequenceOutput | None = None, wake: bool = True
    ) -> None:
        """Record an event or a finished output; `wake=False` leaves waking the caller to a later
        `wake()` (an engine pushing several rows' tokens in one step wakes its caller once)."""
        finished: list[Callable[[RequestHandle], None]] | None = None
        with self._lock:
            if event is not None and self.stream_requested:
                self._events.append(event)
            if output is not None:
                self._outputs[output.index] = output
                if all(o is not None for o in self._outputs) and not self._ended:
                    finished = self._end()
        if finished is not None:
            self._finish(finished)
        if wake:
            self.wake()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            self._error = error
            finished = self._end() if not self._ended else []
        self._finish(finished)
        self.wake()

    def on_done(self, callback: Callable[[RequestHandle], None]) -> None:
        """Call `callback(handle)` once the request has finished or failed (at once if it has),
        on the thread that finishes it, before anyone waiting is told: it must be quick and
        must not raise."""
        with self._lock:
            if not self._ended:
                self._on_done.append(callback)
                return
        self._call([callback])

    def _end(self) -> list[Callable[[RequestHandle], None]]:
        """Mark the request ended (with the lock held); the callbacks to call."""
        self.finished_at = time.monotonic()
        self._ended = True
        callbacks, self._on_done = self._on_done, []
        return callbacks

    def _finish(self, callbacks: list[Callable[[RequestHandle], None]]) -> None:
        # Observers first: whoever waits for the request finds it counted already.
        self._call(callbacks)
        self._done.set()

    def _call(self, callbacks: list[Callable[[RequestHandle], None]]) -> None:
        for callback in callbacks:
            with contextlib.suppress(Exception):  # a hook must never take the engine down
                callback(self)

    @property
    def error(self) -> BaseException | None:
        return self._error

    def outputs_so_far(self) -> list[SequenceOutput]:
        """The rows' outputs, finished ones at least (for observers of a finished request)."""
        with self._lock:
            return [o for o in self._outputs if o is not None]

    def wake(self) -> None:
        for loop, event in list(self._wakeups):
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    # ---- the caller's side
    def cancel(self) -> None:
        """Stop generating for this request; its rows are freed at the engine's next step."""
        self._cancelled.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> list[SequenceOutput]:
        """Block until every prompt has finished (for callers outside asyncio)."""
        if not self._done.wait(timeout):
            raise TimeoutError("generation did not finish in time")
        return self._collect()

    async def wait(self) -> list[SequenceOutput]:
        """Wait, without blocking the event loop, until every prompt has finished."""
        wakeup = self._register()
        try:
            while not self._done.is_set():
                await wakeup.wait()
                wakeup.clear()
        finally:
            self._unregister(wakeup)
        return self._collect()

    async def events(self) -> AsyncIterator[TokenEvent]:
        """The request's token events as they come (needs stream=True at submission)."""
        wakeup = self._register()
        try:
            while True:
                with self._lock:  # the engine appends the last event and ends in one go
                    pending = list(self._events)
                    self._events.clear()
                    error, done = self._error, self._done.is_set()
                for event in pending:
                    yield event
                if error is not None:
                    raise error
                if done:
                    return
                if not pending:
                    await wakeup.wait()
                    wakeup.clear()
        finally:
            self._unregister(wakeup)

    def _register(self) -> asyncio.Event:
        wakeup = asyncio.Event()
        with self._lock:
            self._wakeups.append((asyncio.get_running_loop(), wakeup))
        return wakeup

    def _unregister(self, wakeup: asyncio.Event) -> None:
        with self._lock:
            self._wakeups = [(loop, e) for loop, e in self._wakeups if e is not wakeup]

    def _collect(self) -> list[SequenceOutput]:
        with self._lock:
            if self._error is not None:
                raise self._error
            return [o for o in self._outputs if o is not None]
