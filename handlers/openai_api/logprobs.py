"""Log-probabilities in OpenAI's two shapes: the completions API's parallel lists and the chat
API's list of entries, each token given as its text."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from handlers.openai_api import protocol as p
from textgen.engine import TokenLogprob

TokenText = Callable[[int], str]
# (token id, its log-probability or None, the best alternatives)
Entry = tuple[int, float | None, tuple[tuple[int, float], ...]]


def logprob_entries(scored: Sequence[TokenLogprob]) -> list[Entry]:
    return [_entry(s.token_id, s) for s in scored]


def prompt_entries(prompt_ids: list[int], scored: list[TokenLogprob | None] | None) -> list[Entry]:
    """A prompt's tokens; the first has no log-probability: nothing comes before it."""
    found = scored or [None] * len(prompt_ids)
    return [_entry(i, s) for i, s in zip(prompt_ids, found, strict=True)]


def completion_logprobs(entries: list[Entry], text: TokenText) -> p.CompletionLogprobs:
    """The legacy completions format: parallel lists, offsets into the choice's text."""
    tokens = [text(token_id) for token_id, _, _ in entries]
    offsets, offset = [], 0
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return p.CompletionLogprobs(
        tokens=tokens,
        token_logprobs=[logprob for _, logprob, _ in entries],
        top_logprobs=[
            None if logprob is None else {text(i): lp for i, lp in top}
            for _, logprob, top in entries
        ],
        text_offset=offsets,
    )


def chat_logprobs(scored: Sequence[TokenLogprob], text: TokenText) -> p.ChoiceLogprobs:
    def entry(token_id: int, logprob: float) -> p.TopLogprob:
        token = text(token_id)
        return p.TopLogprob(token=token, logprob=logprob, bytes=list(token.encode()))

    return p.ChoiceLogprobs(
        content=[
            p.TokenLogprob(
                **entry(s.token_id, s.logprob).model_dump(),
                top_logprobs=[entry(i, lp) for i, lp in s.top],
            )
            for s in scored
        ]
    )


def _entry(token_id: int, scored: TokenLogprob | None) -> Entry:
    return (token_id, None, ()) if scored is None else (token_id, scored.logprob, scored.top)
