"""What every backend offers the generation service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

FinishReason = Literal["length", "stop", "time_limit"]


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: int
    finish_reason: FinishReason


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
