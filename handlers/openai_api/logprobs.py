"""Log-probabilities in OpenAI's two shapes: the completions API's parallel lists and the chat
API's list of entries, each token given as its text, or, where it holds part of a character
only, as its bytes written out ("bytes:\\xf0\\x9f", as OpenAI writes such tokens)."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence

from handlers.openai_api import protocol as p
from textgen.engine import TokenLogprob

TokenBytes = Callable[[int], bytes]
# (token id, its log-probability or None, the best alternatives)
Entry = tuple[int, float | None, tuple[tuple[int, float], ...]]


class TextOffsets:
    """Where each token of a choice starts in its text, in characters, token after token: the
    chunks of a stream continue from one another. A character split over tokens counts once,
    where its first token starts."""

    def __init__(self) -> None:
        self._chars = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def next(self, token: bytes) -> int:
        start = self._chars
        self._chars += len(self._decoder.decode(token))
        return start


def token_text(token: bytes) -> str:
    """A token's text, or its bytes written out where they are no whole UTF-8 text."""
    try:
        return token.decode()
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{byte:02x}" for byte in token)


def logprob_entries(scored: Sequence[TokenLogprob]) -> list[Entry]:
    return [_entry(s.token_id, s) for s in scored]


def prompt_entries(prompt_ids: list[int], scored: list[TokenLogprob | None] | None) -> list[Entry]:
    """A prompt's tokens; the first has no log-probability: nothing comes before it."""
    found = scored or [None] * len(prompt_ids)
    return [_entry(i, s) for i, s in zip(prompt_ids, found, strict=True)]


def completion_logprobs(
    entries: list[Entry], token_bytes: TokenBytes, offsets: TextOffsets | None = None
) -> p.CompletionLogprobs:
    """The legacy completions format: parallel lists, offsets into the choice's text (from
    `offsets`, where a stream's earlier chunks left them)."""
    offsets = offsets or TextOffsets()
    raw = [token_bytes(token_id) for token_id, _, _ in entries]
    tokens = [token_text(token) for token in raw]
    return p.CompletionLogprobs(
        tokens=tokens,
        token_logprobs=[logprob for _, logprob, _ in entries],
        top_logprobs=[
            None if logprob is None else _best(token, logprob, top, token_bytes)
            for token, (_, logprob, top) in zip(tokens, entries, strict=True)
        ],
        text_offset=[offsets.next(token) for token in raw],
    )


def chat_logprobs(scored: Sequence[TokenLogprob], token_bytes: TokenBytes) -> p.ChoiceLogprobs:
    def entry(token_id: int, logprob: float) -> p.TopLogprob:
        token = token_bytes(token_id)
        return p.TopLogprob(token=token_text(token), logprob=logprob, bytes=list(token))

    return p.ChoiceLogprobs(
        content=[
            p.TokenLogprob(
                **entry(s.token_id, s.logprob).model_dump(),
                top_logprobs=[entry(i, lp) for i, lp in s.top],
            )
            for s in scored
        ]
    )


def _best(
    token: str, logprob: float, top: tuple[tuple[int, float], ...], token_bytes: TokenBytes
) -> dict[str, float]:
    """The best alternatives, and the token itself: OpenAI always gives the chosen token, so
    there are up to logprobs + 1."""
    best = {token_text(token_bytes(i)): lp for i, lp in top}
    best.setdefault(token, logprob)
    return best


def _entry(token_id: int, scored: TokenLogprob | None) -> Entry:
    return (token_id, None, ()) if scored is None else (token_id, scored.logprob, scored.top)
