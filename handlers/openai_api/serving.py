"""The OpenAI-compatible API on the generation service: requests become engine jobs, outputs and
token events become OpenAI's responses and stream chunks. No HTTP here: routes.py sends them."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.concurrency import run_in_threadpool

from handlers.openai_api import protocol as p
from handlers.openai_api.bodies import chat_request, completion_request
from handlers.openai_api.logprobs import (
    TextOffsets,
    chat_logprobs,
    completion_logprobs,
    logprob_entries,
    prompt_entries,
)
from handlers.request_ids import current_request_id
from textgen.engine import SequenceOutput, TokenEvent, TokenLogprob
from textgen.families import Family
from textgen.service import Generation, GenerationService

Finish = Literal["stop", "length"]


def _finish(reason: str | None) -> Finish | None:
    """OpenAI knows "stop" and "length": a cut at the time limit is a cut for length."""
    if reason is None:
        return None
    return "stop" if reason == "stop" else "length"


@dataclass(frozen=True)
class Prepared:
    """A request on its way: the generation, and what answering it in OpenAI's shape needs."""

    generation: Generation
    id: str  # the response's, every chunk of a stream's included
    echo: bool = False  # completions: each choice's text follows its prompt

    @property
    def model(self) -> str:
        return self.generation.request.model_name

    @property
    def choices_per_prompt(self) -> int:
        return self.generation.request.choices

    def prompt_of(self, index: int) -> str:
        """The prompt row `index` continues."""
        return self.generation.prompts[index // self.choices_per_prompt]


class OpenAIServing:
    def __init__(self, service: GenerationService) -> None:
        self._service = service
        self._started = int(time.time())

    # ---- models
    def models(self) -> p.ModelList:
        served = [m for m in self._service.list_models() if m.family in tuple(Family)]
        return p.ModelList(data=[self._card(m.name) for m in served])

    def model(self, name: str) -> p.ModelCard:
        return self._card(self._service.describe(name).name)

    def _card(self, name: str) -> p.ModelCard:
        return p.ModelCard(id=name, created=self._started)

    # ---- completions
    async def start_completion(self, body: p.CompletionRequest, deadline: float | None) -> Prepared:
        return await run_in_threadpool(self.submit_completion, body, deadline)

    def submit_completion(
        self, body: p.CompletionRequest, deadline: float | None, background: bool = False
    ) -> Prepared:
        """Check the request and queue it on its model's engine (blocking: loads the model if
        needed); a `background` one (a batch file's line) starts after interactive ones."""
        request = completion_request(body, deadline, background)
        return Prepared(self._service.submit(request), _new_id("cmpl"), body.echo)

    def check(self, body: p.CompletionRequest | p.ChatCompletionRequest) -> None:
        """What submitting `body` checks before a model is loaded: a batch file's lines are
        checked so, all of them, before any runs."""
        if isinstance(body, p.CompletionRequest):
            self._service.check(completion_request(body, None, background=True))
        else:
            self._service.check(chat_request(body, None, background=True))

    def completion(self, prepared: Prepared, outputs: list[SequenceOutput]) -> p.Completion:
        choices = [
            p.CompletionChoice(
                text=self._echoed(prepared, o) + o.text,
                index=o.index,
                logprobs=self._completion_logprobs(prepared, o),
                finish_reason=_finish(o.finish_reason),
            )
            for o in outputs
        ]
        return p.Completion(
            id=prepared.id,
            created=int(time.time()),
            model=prepared.model,
            choices=choices,
            usage=_usage(prepared, outputs),
        )

    async def completion_chunks(self, prepared: Prepared) -> AsyncIterator[p.Completion]:
        created = int(time.time())
        offsets: dict[int, TextOffsets] = {}  # each choice's, from one chunk to the next
        async for event in prepared.generation.events():
            text = event.text
            if event.index not in offsets:  # the choice's first chunk
                offsets[event.index] = TextOffsets()
                if prepared.echo:
                    text = prepared.prompt_of(event.index) + text
            logprobs = None
            if prepared.generation.request.logprobs is not None and event.logprobs:
                logprobs = completion_logprobs(
                    logprob_entries(event.logprobs),
                    prepared.generation.token_bytes,
                    offsets[event.index],
                )
            choice = p.CompletionChoice(
                text=text,
                index=event.index,
                logprobs=logprobs,
                finish_reason=_finish(event.finish_reason),
            )
            yield p.Completion(
                id=prepared.id, created=created, model=prepared.model, choices=[choice]
            )

    # ---- chat
    async def start_chat(self, body: p.ChatCompletionRequest, deadline: float | None) -> Prepared:
        return await run_in_threadpool(self.submit_chat, body, deadline)

    def submit_chat(
        self, body: p.ChatCompletionRequest, deadline: float | None, background: bool = False
    ) -> Prepared:
        """Check the conversation and queue it on its model's engine (blocking)."""
        request = chat_request(body, deadline, background)
        return Prepared(self._service.submit(request), _new_id("chatcmpl"))

    def chat(self, prepared: Prepared, outputs: list[SequenceOutput]) -> p.ChatCompletion:
        choices = [
            p.ChatChoice(
                index=o.index,
                message=p.AssistantMessage(content=o.text),
                logprobs=self._chat_logprobs(prepared, o.logprobs),
                finish_reason=_finish(o.finish_reason) or "length",
            )
            for o in outputs
        ]
        return p.ChatCompletion(
            id=prepared.id,
            created=int(time.time()),
            model=prepared.model,
            choices=choices,
            usage=_usage(prepared, outputs),
        )

    async def chat_chunks(self, prepared: Prepared) -> AsyncIterator[p.ChatCompletionChunk]:
        created = int(time.time())

        def chunk(choice: p.ChatChunkChoice) -> p.ChatCompletionChunk:
            return p.ChatCompletionChunk(
                id=prepared.id, created=created, model=prepared.model, choices=[choice]
            )

        for index in range(prepared.generation.rows):  # OpenAI opens with the role
            yield chunk(p.ChatChunkChoice(index=index, delta=p.Delta(role="assistant", content="")))
        async for event in prepared.generation.events():
            if event.text or event.logprobs:
                logprobs = self._chat_logprobs(prepared, list(event.logprobs))
                delta = p.Delta(content=event.text)
                yield chunk(p.ChatChunkChoice(index=event.index, delta=delta, logprobs=logprobs))
            if event.finish_reason is not None:
                finish = _finish(event.finish_reason)
                yield chunk(
                    p.ChatChunkChoice(index=event.index, delta=p.Delta(), finish_reason=finish)
                )

    # ---- both
    def usage_chunk(self, prepared: Prepared, chunk_type: Callable[..., Any]) -> Any:
        """The last chunk of a stream with stream_options.include_usage: no choices, the usage."""
        outputs = prepared.generation.wait(timeout=0)
        return chunk_type(
            id=prepared.id,
            created=int(time.time()),
            model=prepared.model,
            choices=[],
            usage=_usage(prepared, outputs),
        )

    def _echoed(self, prepared: Prepared, output: SequenceOutput) -> str:
        return prepared.prompt_of(output.index) if prepared.echo else ""

    def _completion_logprobs(
        self, prepared: Prepared, output: SequenceOutput
    ) -> p.CompletionLogprobs | None:
        generation = prepared.generation
        if generation.request.logprobs is None:
            return None
        entries = logprob_entries(output.logprobs)
        if prepared.echo:
            prompt = prompt_entries(generation.prompt_ids(output.index), output.prompt_logprobs)
            entries = prompt + entries
        return completion_logprobs(entries, generation.token_bytes)

    def _chat_logprobs(
        self, prepared: Prepared, scored: list[TokenLogprob]
    ) -> p.ChoiceLogprobs | None:
        if prepared.generation.request.logprobs is None:
            return None
        return chat_logprobs(scored, prepared.generation.token_bytes)


def _usage(prepared: Prepared, outputs: list[SequenceOutput]) -> p.Usage:
    # A prompt is counted once, however many choices it has.
    prompt = sum(o.prompt_tokens for o in outputs[:: prepared.choices_per_prompt])
    completion = sum(len(o.token_ids) for o in outputs)
    return p.Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def _new_id(prefix: str) -> str:
    """The response's id: the request's own (handlers.request_ids), where there is one."""
    return f"{prefix}-{current_request_id.get() or uuid.uuid4().hex}"


__all__ = ["OpenAIServing", "Prepared", "TokenEvent"]
