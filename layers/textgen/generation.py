"""A request to the generation service, and the one object its caller holds while it runs: the
outputs once every prompt is done, or the token events as they come, the text of any token id,
cancelling, and the figures at the end."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from textgen.backends import Backend
from textgen.engine import Job, SamplingParams, SequenceOutput, TokenEvent
from textgen.engine.handle import RequestHandle
from textgen.families import Family, Framework
from textgen.store import FetchedModel, ModelDescription
from textgen.timing import Stopwatch, Throughput, Timing, throughput


@dataclass(frozen=True)
class GenerationRequest:
    model_name: str
    prompts: list[str]  # ignored where `messages` or `prompt_ids` is given
    family: Family | None  # the endpoint's family (another is refused), or None for any
    framework: Framework = Framework.PYTORCH
    task: str = "text-generation"
    # None: the configured DEFAULT_MAX_TOKENS, or fewer where a prompt leaves less room in the
    # model's context (as OpenAI's chat does), so that asking no length never fails for it.
    max_tokens: int | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    # time.monotonic() by which generation must stop, so the answer beats the caller's timeout.
    deadline: float | None = None
    stream: bool = False  # each token as it comes, through Generation.events()
    logprobs: int | None = None  # per generated token: its log-probability and this many others
    prompt_logprobs: bool = False  # each prompt token's log-probability (scoring text)
    special_tokens: bool = True  # False: the prompts carry their own (rendered chat templates)
    # A conversation to render with the model's chat template: its one prompt (which carries
    # the model's special tokens itself).
    messages: list[dict[str, str]] | None = None
    choices: int = 1  # how many times each prompt runs (OpenAI's `n`), its rows side by side
    # Prompts given as token ids (OpenAI's completions take either): run as they are.
    prompt_ids: list[list[int]] | None = None
    background: bool = False  # a batch file's line: interactive requests start first
    # What the caller's API calls the prompts, for errors: OpenAI's completions say `prompt`,
    # a conversation is `messages` (textgen.errors.prompt_label).
    prompt_name: str = "prompts"


@dataclass(frozen=True)
class FinishedRequest:
    """A request's figures once it has finished or failed (what metrics count)."""

    model_name: str
    prompt_tokens: int  # each prompt once, however many choices it has
    generation_tokens: int
    finish_reasons: list[str]  # a row's each ("error" for every row of a failed request)
    queue_seconds: float  # submitted to admitted by the engine
    first_token_seconds: float  # submitted to its first token (to its end where none came)
    seconds: float  # submitted to finished
    # The mean gap between a row's tokens (its rows decode side by side, the longest ending it),
    # where a row made two tokens or more.
    inter_token_seconds: float | None

    @classmethod
    def of(cls, model_name: str, handle: RequestHandle, choices: int) -> FinishedRequest:
        outputs = handle.outputs_so_far()
        end = handle.finished_at or handle.submitted_at
        first = handle.first_token_at or end
        tokens = sum(len(o.token_ids) for o in outputs)
        gaps = max((len(o.token_ids) - 1 for o in outputs), default=0)
        failed = handle.error is not None
        return cls(
            model_name=model_name,
            prompt_tokens=sum(o.prompt_tokens for o in outputs[::choices]),
            generation_tokens=tokens,
            finish_reasons=["error"] * handle.rows
            if failed
            else [o.finish_reason for o in outputs],
            queue_seconds=(handle.started_at or end) - handle.submitted_at,
            first_token_seconds=first - handle.submitted_at,
            seconds=end - handle.submitted_at,
            inter_token_seconds=(end - first) / gaps if gaps and not failed else None,
        )


@dataclass(frozen=True)
class GenerationResult:
    model: ModelDescription
    framework: Framework
    task: str
    completions: list[SequenceOutput]
    throughput: Throughput
    timing: Timing


@dataclass(frozen=True)
class Generation:
    """A request handed to its model's engine, as its caller sees it."""

    request: GenerationRequest
    model: ModelDescription
    prompts: list[str]  # as run, once each (a conversation's rendered template)
    backend: Backend
    job: Job
    fetched: FetchedModel  # what getting the files cost this request (nothing once loaded)
    load_seconds: float | None  # None: the model was loaded already
    clock: Stopwatch

    @property
    def rows(self) -> int:
        """Prompts times choices: the rows decoding, each with its output's `index`."""
        return self.job.handle.rows

    def prompt_ids(self, index: int) -> list[int]:
        """The tokens of row `index`'s prompt."""
        return self.job.prompt_ids[index]

    def token_bytes(self, token_id: int) -> bytes:
        return self.backend.token_bytes(token_id)

    async def outputs(self) -> list[SequenceOutput]:
        """Every row's output, once all are done, without blocking the event loop."""
        return await self.job.handle.wait()

    def events(self) -> AsyncIterator[TokenEvent]:
        """The rows' token events as they come (the request must have asked to stream)."""
        return self.job.handle.events()

    def wait(self, timeout: float | None = None) -> list[SequenceOutput]:
        """Block until every row is done (for callers outside asyncio)."""
        return self.job.handle.result(timeout)

    def cancel(self) -> None:
        """Stop generating; the rows are freed at the engine's next step."""
        self.job.handle.cancel()

    def result(self, outputs: list[SequenceOutput]) -> GenerationResult:
        """The outputs with the request's figures."""
        handle = self.job.handle
        started = handle.started_at or handle.submitted_at
        generate_seconds = (handle.finished_at or time.monotonic()) - started
        return GenerationResult(
            model=self.model,
            framework=self.request.framework,
            task=self.request.task,
            completions=outputs,
            throughput=throughput(len(outputs), sum(o.tokens for o in outputs), generate_seconds),
            timing=Timing(
                load_seconds=self.load_seconds or 0.0,
                fetch_seconds=self.fetched.fetch_seconds,
                download_bytes=self.fetched.downloaded_bytes,
                queue_seconds=started - handle.submitted_at,
                generate_seconds=generate_seconds,
                total_seconds=self.clock.elapsed(),
                model_loaded=self.load_seconds is not None,
            ),
        )
