"""A request as the engine runs it, and the limits every engine enforces."""

from __future__ import annotations

from dataclasses import dataclass, field

from textgen.engine.handle import RequestHandle
from textgen.engine.params import SamplingParams


@dataclass
class Job:
    """One request: its prompts, each a row of the batch, and how to generate for them."""

    prompts: list[str]
    prompt_ids: list[list[int]]  # the prompts' tokens (empty lists where a backend tokenizes)
    max_new_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    deadline: float | None = None  # time.monotonic() by which generation stops
    logprobs: int | None = None  # per generated token: its log-probability and this many others
    prompt_logprobs: bool = False  # the log-probability of every prompt token (scoring)
    stream: bool = False  # deliver each token as it comes (RequestHandle.events)
    background: bool = False  # a batch file's line: starts after every waiting interactive job
    handle: RequestHandle = field(init=False)

    def __post_init__(self) -> None:
        self.handle = RequestHandle(len(self.prompts), stream=self.stream)

    @property
    def rows(self) -> int:
        return len(self.prompts)

    @property
    def width(self) -> int:
        """KV cache columns its rows may need: its longest prompt plus the new tokens."""
        return max((len(ids) for ids in self.prompt_ids), default=0) + self.max_new_tokens

    @property
    def prompt_tokens(self) -> int:
        return sum(len(ids) for ids in self.prompt_ids)


@dataclass(frozen=True)
class EngineLimits:
    max_batch_size: int = 32  # rows decoding together
    max_queued_requests: int = 64  # requests waiting beyond which new ones get a 429
    kv_token_budget: int = 1 << 20  # rows x cache width the KV cache may hold at once
    max_prefill_tokens: int = 8192  # prompt tokens admitted in one step (others wait a step)
    max_row_tokens: int | None = None  # a row's prompt plus new tokens, where the cache is fixed
