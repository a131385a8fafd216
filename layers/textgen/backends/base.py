"""What every backend offers the generation service, and helpers they share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from textgen.engine import Engine, Job
from textgen.engine.handle import FinishReason
from textgen.engine.whole_request import WholeOutput
from textgen.errors import ContextLengthExceeded, InvalidRequest, prompt_label


class Backend(Protocol):
    """A loaded model: its engine, and how its prompts become that engine's jobs."""

    engine: Engine
    context_length: int

    def encode(
        self,
        prompts: list[str],
        max_new_tokens: int,
        special_tokens: bool = True,
        name: str = "prompts",
    ) -> list[list[int]]:
        """The prompts' tokens, each checked to fit the context with the new tokens (empty
        lists where the backend tokenizes for itself). `special_tokens=False` for text that
        carries its own (a rendered chat template); errors call the prompts `name`."""
        ...

    def checked_ids(
        self, prompt_ids: list[list[int]], max_new_tokens: int, name: str = "prompts"
    ) -> list[list[int]]:
        """Prompts given as token ids, each id checked against the vocabulary and each prompt
        to fit the context with the new tokens (InvalidRequest where the backend takes text
        only)."""
        ...

    def decode(self, token_ids: list[int]) -> str:
        """The text of a run of tokens (a prompt given as ids, echoed)."""
        ...

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The conversation rendered with the model's chat template, ready for its answer."""
        ...

    def token_bytes(self, token_id: int) -> bytes:
        """One token's own bytes (for log-probabilities): part of a character, for some."""
        ...

    def check(self, job: Job) -> None:
        """Refuse (InvalidRequest) what this backend cannot do for the job."""
        ...


def check_token_ids(prompt_ids: list[list[int]], vocab_size: int, name: str = "prompts") -> None:
    """Every id a token of the vocabulary: the first that is not is named."""
    for index, ids in enumerate(prompt_ids):
        for position, token_id in enumerate(ids):
            if not 0 <= token_id < vocab_size:
                raise InvalidRequest(
                    f"{prompt_label(name, index)}[{position}] is token id {token_id}, outside "
                    f"the model's vocabulary (0 to {vocab_size - 1})",
                    field=name,
                )


def check_prompts_fit(
    prompt_lengths: list[int], max_new_tokens: int, context_length: int, name: str = "prompts"
) -> None:
    for index, length in enumerate(prompt_lengths):
        label = prompt_label(name, index)
        if length == 0:
            raise InvalidRequest(f"{label} encodes to no tokens", field=name)
        if length + max_new_tokens > context_length:
            raise ContextLengthExceeded(
                f"{label} is {length} tokens; with max_tokens={max_new_tokens} it exceeds the "
                f"model's context of {context_length} tokens",
                field=name,
            )


def eos_token_ids(*candidates: Any) -> frozenset[int]:
    """End tokens: the first of the candidates that names any (an id or a list of ids)."""
    for eos in candidates:
        if eos is not None:
            return frozenset(eos if isinstance(eos, list) else [eos])
    return frozenset()


def completion_from_ids(
    new_ids: list[int],
    max_new_tokens: int,
    eos_ids: frozenset[int],
    decode: Callable[[list[int]], str],
) -> WholeOutput:
    """A prompt's completion from the ids generated after it, cut at its first end token."""
    new_ids = new_ids[:max_new_tokens]
    stop_at = next((i for i, token in enumerate(new_ids) if token in eos_ids), None)
    kept = new_ids if stop_at is None else new_ids[:stop_at]
    reason: FinishReason = "stop"
    if stop_at is None:
        # Neither its end token nor max_tokens: the time budget ended the batch.
        reason = "length" if len(new_ids) >= max_new_tokens else "time_limit"
    return decode(kept), kept, reason
