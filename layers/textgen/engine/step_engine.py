"""Continuous batching: one forward pass per step for every running row, whichever request it
belongs to. Between steps, waiting requests join (their prompts prefilled into new rows) and
finished rows leave, their requests answered at once. The runner owns the model and its KV cache;
this module decides what runs, and turns logits into tokens, text and finished sequences."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tokenizers import Tokenizer

from textgen.engine.core import Engine
from textgen.engine.handle import (
    FinishReason,
    RequestHandle,
    SequenceOutput,
    TokenEvent,
    TokenLogprob,
)
from textgen.engine.job import EngineLimits, Job
from textgen.engine.sampling import choose_token, log_softmax, row_generator
from textgen.engine.text import RowText
from textgen.errors import TextgenError


class StepRunner(Protocol):
    """A model and its KV cache, as rows 0..n-1 that each decode at a position of their own."""

    def add_rows(self, prompts: list[list[int]], width: int, all_logits: bool) -> list[np.ndarray]:
        """Prefill new rows after the running ones, with room for `width` tokens in every row.
        For each prompt, its last token's logits [vocab], or every token's [length, vocab]."""
        ...

    def step(self, tokens: list[int]) -> np.ndarray:
        """One token for each running row, in row order; the logits that follow [rows, vocab]
        (a runner may reuse their memory at its next call)."""
        ...

    def move_row(self, source: int, target: int) -> None:
        """Make row `target` what row `source` is (to close the gap a finished row left)."""
        ...

    def truncate(self, rows: int) -> None:
        """Keep rows 0..rows-1 only (and free the memory when none remain)."""
        ...

    # A runner may also offer `step_greedy(tokens) -> list[int]`: the step, each row's most
    # likely token picked where the logits are (on a GPU), so only a token per row moves.


@dataclass
class _Row:
    job: Job
    output: SequenceOutput
    text: RowText
    rng: np.random.Generator
    seen: set[int]  # token ids the repetition penalty applies to (when one is asked for)
    width: int
    last_token: int = -1
    finished: bool = False
    seen_array: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


class StepEngine(Engine):
    def __init__(
        self,
        name: str,
        runner: StepRunner,
        tokenizer: Tokenizer,
        eos_ids: frozenset[int],
        limits: EngineLimits,
        runtime: str,
    ) -> None:
        super().__init__(name, limits, runtime)
        self._runner = runner
        self._tokenizer = tokenizer
        self._eos_ids = eos_ids
        self._rows: list[_Row] = []
        self._pushed: set[RequestHandle] = set()  # handles given events this cycle

    def _running_rows(self) -> int:
        return len(self._rows)

    def _kv_usage(self) -> float:
        """The share of the KV cache's token budget the running rows hold (each its width)."""
        rows = list(self._rows)
        width = max((row.width for row in rows), default=0)
        return min(len(rows) * width / self.limits.kv_token_budget, 1.0)

    def _can_start(self, job: Job, admitted: list[Job]) -> bool:
        starting = [*admitted, job]
        rows = len(self._rows) + sum(j.rows for j in starting)
        width = max([r.width for r in self._rows] + [j.width for j in starting])
        prefill = sum(j.prompt_tokens for j in starting)
        first = not self._rows and not admitted  # an idle engine always takes the next job
        return (
            rows <= self.limits.max_batch_size
            and rows * width <= self.limits.kv_token_budget
            and (first or prefill <= self.limits.max_prefill_tokens)
        )

    def _cycle(self, admitted: list[Job]) -> None:
        try:
            self._run_cycle(admitted)
        finally:
            self._wake_pushed()

    def _run_cycle(self, admitted: list[Job]) -> None:
        for row in self._rows:
            if row.job.handle.cancelled:
                self._finish(row, "cancelled", ())
        self._drop_finished()
        if admitted:
            self._start(admitted)
            self._drop_finished()  # rows that ended with their first token
            self._wake_pushed()  # first tokens out now, not after the step
        if self._rows:
            self._step(self._rows)
            self._drop_finished()

    def _step(self, rows: list[_Row]) -> None:
        """One forward pass for every running row, and each row's next token."""
        tokens = [row.last_token for row in rows]
        plain = all(
            r.job.sampling.greedy
            and r.job.sampling.repetition_penalty == 1.0
            and r.job.logprobs is None
            for r in rows
        )
        step_greedy = getattr(self._runner, "step_greedy", None)  # offered by some runners
        if plain and step_greedy is not None:  # the device picks: no row's logits move
            chosen: list[int] = step_greedy(tokens)
            self._record_step(len(rows))
            for row, token in zip(rows, chosen, strict=True):
                self._advance(row, token, None)
            return
        logits = self._runner.step(tokens)
        self._record_step(len(rows))
        if plain:  # the common case in one vectorised call
            for row, token in zip(rows, np.argmax(logits, axis=1).tolist(), strict=True):
                self._advance(row, token, None)
            return
        for row, row_logits in zip(rows, logits, strict=True):
            self._advance(row, self._choose(row, row_logits), row_logits)

    def _start(self, jobs: list[Job]) -> None:
        rows = [self._new_row(job, index) for job in jobs for index in range(job.rows)]
        width = max(r.width for r in [*self._rows, *rows])
        all_logits = any(job.prompt_logprobs for job in jobs)
        prompts = [r.job.prompt_ids[r.output.index] for r in rows]
        logits = self._runner.add_rows(prompts, width, all_logits)
        self._rows.extend(rows)
        for row, prompt, row_logits in zip(rows, prompts, logits, strict=True):
            last = row_logits if row_logits.ndim == 1 else row_logits[-1]
            if row.job.prompt_logprobs:
                top = row.job.logprobs or 0
                row.output.prompt_logprobs = _prompt_logprobs(prompt, row_logits, top)
            if row.job.max_new_tokens == 0:  # scoring the prompt only
                self._finish(row, "length", ())
            else:
                self._advance(row, self._choose(row, last), last)

    def _new_row(self, job: Job, index: int) -> _Row:
        prompt = job.prompt_ids[index]
        output = SequenceOutput(index=index, prompt_tokens=len(prompt))
        seen = set(prompt) if job.sampling.repetition_penalty != 1.0 else set[int]()
        return _Row(
            job=job,
            output=output,
            text=RowText(self._tokenizer, job.sampling.stop),
            rng=row_generator(job.sampling.seed, index),
            seen=seen,
            width=len(prompt) + job.max_new_tokens,
            seen_array=np.fromiter(seen, dtype=np.int64),
        )

    def _choose(self, row: _Row, logits: np.ndarray) -> int:
        return choose_token(logits, row.job.sampling, row.rng, row.seen_array)

    def _advance(self, row: _Row, token: int, logits: np.ndarray | None) -> None:
        """Take the row's next token; finish the row if that ends it."""
        job, output = row.job, row.output
        if token in self._eos_ids and not job.sampling.ignore_eos:
            # The end token itself is not part of the output.
            self._finish(row, "stop", ())
            return
        output.token_ids.append(token)
        if job.handle.first_token_at is None:
            job.handle.first_token_at = time.monotonic()
        row.last_token = token
        if job.sampling.repetition_penalty != 1.0 and token not in row.seen:
            row.seen.add(token)
            row.seen_array = np.append(row.seen_array, token)
        if job.logprobs is not None and logits is not None:
            output.logprobs.append(_token_logprob(token, logits, job.logprobs))
        row.text.add(token)
        if row.text.stopped:
            self._finish(row, "stop", (token,))
        elif len(output.token_ids) >= job.max_new_tokens:
            self._finish(row, "length", (token,))
        elif job.deadline is not None and time.monotonic() >= job.deadline:
            self._finish(row, "time_limit", (token,))
        elif job.handle.stream_requested:
            logprobs = tuple(output.logprobs[-1:])
            event = TokenEvent(output.index, row.text.release(), (token,), None, logprobs)
            self._push(job.handle, event)

    def _finish(self, row: _Row, reason: FinishReason, new_ids: tuple[int, ...]) -> None:
        row.finished = True
        output = row.output
        output.finish_reason = reason
        output.text = row.text.text
        logprobs = tuple(output.logprobs[-1:]) if new_ids else ()
        event = TokenEvent(output.index, row.text.release(final=True), new_ids, reason, logprobs)
        self._push(row.job.handle, event, output)

    def _push(
        self, handle: RequestHandle, event: TokenEvent, output: SequenceOutput | None = None
    ) -> None:
        handle.push(event, output, wake=False)
        self._pushed.add(handle)

    def _wake_pushed(self) -> None:
        """Wake each caller given events since the last wake once, not once a row: a wake is a
        write to its event loop's pipe, and a thread woken to compete for the cores."""
        pushed, self._pushed = self._pushed, set()
        for handle in pushed:
            handle.wake()

    def _drop_finished(self) -> None:
        """Close the gaps finished rows leave by moving the last rows into them."""
        index = 0
        while index < len(self._rows):
            if not self._rows[index].finished:
                index += 1
                continue
            last = len(self._rows) - 1
            if index != last:
                self._runner.move_row(last, index)
                self._rows[index] = self._rows[last]
            self._rows.pop()
        self._runner.truncate(len(self._rows))

    def _abort_running(self, error: TextgenError) -> None:
        for row in self._rows:
            if not row.finished:
                row.finished = True
                row.job.handle.fail(error)
        self._rows = []
        self._runner.truncate(0)


def _token_logprob(token: int, logits: np.ndarray, top: int) -> TokenLogprob:
    return _scored(token, log_softmax(logits), top)


def _scored(token: int, logprobs: np.ndarray, top: int) -> TokenLogprob:
    alternatives: tuple[tuple[int, float], ...] = ()
    if top:
        best = np.argpartition(logprobs, -top)[-top:]
        best = best[np.argsort(-logprobs[best], kind="stable")]
        alternatives = tuple((int(i), float(logprobs[i])) for i in best)
    return TokenLogprob(token, float(logprobs[token]), alternatives)


def _prompt_logprobs(prompt: list[int], logits: np.ndarray, top: int) -> list[TokenLogprob | None]:
    """Each prompt token's log-probability given the tokens before it (none for the first)."""
    scored: list[TokenLogprob | None] = [None]
    for position in range(1, len(prompt)):
        scored.append(_scored(prompt[position], log_softmax(logits[position - 1]), top))
    return scored
