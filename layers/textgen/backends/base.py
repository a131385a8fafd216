"""What every backend offers the generation service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from textgen.errors import InvalidRequest

FinishReason = Literal["length", "stop", "time_limit"]


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: int
    finish_reason: FinishReason


def check_prompts_fit(prompt_lengths: list[int], max_new_tokens: int, context_length: int) -> None:
    for index, length in enumerate(prompt_lengths):
        if length == 0:
            raise InvalidRequest(f"prompts[{index}] encodes to no tokens", field="prompts")
        if length + max_new_tokens > context_length:
            raise InvalidRequest(
                f"prompts[{index}] is {length} tokens; with max_tokens={max_new_tokens} it "
                f"exceeds the model's context of {context_length} tokens",
                field="prompts",
            )


def completion_from_ids(
    new_ids: list[int],
    max_new_tokens: int,
    eos_ids: frozenset[int],
    decode: Callable[[list[int]], str],
) -> Completion:
    """A prompt's completion from the ids generated after it, cut at its first end token."""
    new_ids = new_ids[:max_new_tokens]
    stop_at = next((i for i, token in enumerate(new_ids) if token in eos_ids), None)
    kept = new_ids if stop_at is None else new_ids[:stop_at]
    reason: FinishReason = "stop"
    if stop_at is None:
        # Neither its end token nor max_tokens: the time budget ended the batch.
        reason = "length" if len(new_ids) >= max_new_tokens else "time_limit"
    return Completion(text=decode(kept), tokens=len(kept), finish_reason=reason)


class TextGenerator(Protocol):
    @property
    def context_length(self) -> int:
        """Most tokens (prompt plus generated) the model can attend to."""
        ...

    def generate(
        self, prompts: list[str], max_new_tokens: int, time_budget: float | None = None
    ) -> list[Completion]:
        """Greedy completions of all prompts, computed together as one batch, in prompt order.

        With a time budget (seconds), generation stops when it runs out; prompts not finished by
        then end with finish_reason "time_limit".
        """
        ...
