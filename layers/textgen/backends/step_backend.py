"""What every backend under the step engine shares: the model's tokenizer (prompts, chat
template, token texts, end tokens) and an engine over the backend's runner."""

from __future__ import annotations

from textgen.backends.base import check_prompts_fit, check_token_ids
from textgen.backends.tokenizer import ModelTokenizer
from textgen.engine import EngineLimits, Job
from textgen.engine.step_engine import StepEngine, StepRunner
from textgen.settings import Settings


def kv_token_budget(settings: Settings, kv_bytes_per_token: int) -> int:
    """Tokens of keys and values KV_CACHE_MAX_BYTES holds for a model."""
    return max(1, settings.kv_cache_max_bytes // kv_bytes_per_token)


class StepBackend:
    """A loaded model whose runner decodes rows step by step under a StepEngine."""

    def __init__(
        self,
        name: str,
        tokens: ModelTokenizer,
        runner: StepRunner,
        context_length: int,
        kv_bytes_per_token: int,
        settings: Settings,
        runtime: str,
        max_row_tokens: int | None = None,
    ) -> None:
        self._tokenizer = tokens
        self.context_length = context_length
        limits = EngineLimits(
            max_batch_size=settings.max_batch_size,
            max_queued_requests=settings.max_queued_requests,
            kv_token_budget=kv_token_budget(settings, kv_bytes_per_token),
            max_prefill_tokens=settings.max_prefill_tokens,
            max_row_tokens=max_row_tokens,
        )
        self.engine = StepEngine(name, runner, tokens.backend, tokens.eos_ids, limits, runtime)

    def encode(
        self,
        prompts: list[str],
        max_new_tokens: int,
        special_tokens: bool = True,
        name: str = "prompts",
    ) -> list[list[int]]:
        prompt_ids = self._tokenizer.encode(prompts, special_tokens)
        return self._fitting(prompt_ids, max_new_tokens, name)

    def checked_ids(
        self, prompt_ids: list[list[int]], max_new_tokens: int, name: str = "prompts"
    ) -> list[list[int]]:
        check_token_ids(prompt_ids, self._tokenizer.vocab_size, name)
        return self._fitting(prompt_ids, max_new_tokens, name)

    def _fitting(
        self, prompt_ids: list[list[int]], max_new_tokens: int, name: str
    ) -> list[list[int]]:
        lengths = [len(ids) for ids in prompt_ids]
        check_prompts_fit(lengths, max_new_tokens, self.context_length, name)
        return prompt_ids

    def decode(self, token_ids: list[int]) -> str:
        return self._tokenizer.decode(token_ids)

    def check(self, job: Job) -> None:
        """Everything the engine offers works here."""

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return self._tokenizer.chat_prompt(messages)

    def token_bytes(self, token_id: int) -> bytes:
        return self._tokenizer.token_bytes(token_id)
