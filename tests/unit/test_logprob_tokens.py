"""Log-probabilities' tokens where a token is part of a character: byte-level BPE splits emoji
and many scripts' characters over tokens, each of which alone decodes to U+FFFD. OpenAI gives such
a token's bytes (`bytes` in chat) and writes its text as "bytes:\\xf0\\x9f"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from handlers.openai_api.logprobs import (
    TextOffsets,
    chat_logprobs,
    completion_logprobs,
    logprob_entries,
    token_text,
)
from textgen.backends.tokenizer import ModelTokenizer
from textgen.engine import TokenLogprob

TEXT = "Sea 🌊🐠, naïve 日本語 ok"


@pytest.fixture(scope="module")
def tokenizer(store_dir: Path) -> ModelTokenizer:
    return ModelTokenizer(store_dir / "llama-chat-test")


def scored(tokenizer: ModelTokenizer, text: str) -> list[TokenLogprob]:
    ids = tokenizer.encode([text], special_tokens=False)[0]
    # Each position's alternatives: the next ids, which are partial bytes too in places.
    return [TokenLogprob(i, -1.0, ((i, -1.0), *((j, -2.0) for j in ids if j != i))) for i in ids]


def written_bytes(token: str) -> bytes:
    if token.startswith("bytes:"):
        return bytes(int(h, 16) for h in re.findall(r"\\x([0-9a-f]{2})", token))
    return token.encode()


def test_a_tokens_bytes_put_together_are_the_text(tokenizer: ModelTokenizer) -> None:
    ids = tokenizer.encode([TEXT], special_tokens=False)[0]
    alone = [tokenizer.decode([i]) for i in ids]

    assert b"".join(tokenizer.token_bytes(i) for i in ids).decode() == TEXT
    assert "\ufffd" in "".join(alone)  # the text splits characters over tokens here
    assert "".join(alone) != TEXT  # so joining their texts alone could not pass
    end = tokenizer.special_tokens["eos_token"]  # a special token: its text, whole
    assert [tokenizer.token_bytes(i) for i in tokenizer.encode([end])[0]] == [end.encode()]


def test_chat_logprobs_bytes_rebuild_the_text_and_name_partial_tokens(
    tokenizer: ModelTokenizer,
) -> None:
    content = chat_logprobs(scored(tokenizer, TEXT), tokenizer.token_bytes).content

    assert b"".join(bytes(t.bytes) for t in content).decode() == TEXT
    partial = [t for t in content if t.token.startswith("bytes:")]
    assert partial and all(written_bytes(t.token) == bytes(t.bytes) for t in partial)
    assert all("\ufffd" not in t.token for t in content)
    whole = [t for t in content if not t.token.startswith("bytes:")]
    assert all(t.token.encode() == bytes(t.bytes) for t in whole)
    assert all(len(t.top_logprobs) == len({a.token for a in t.top_logprobs}) for t in content)


def test_completion_logprobs_keep_every_alternative_and_offset_into_the_text(
    tokenizer: ModelTokenizer,
) -> None:
    entries = logprob_entries(scored(tokenizer, TEXT))
    logprobs = completion_logprobs(entries, tokenizer.token_bytes)

    assert b"".join(written_bytes(t) for t in logprobs.tokens).decode() == TEXT
    for token, offset in zip(logprobs.tokens, logprobs.text_offset, strict=True):
        if not token.startswith("bytes:"):
            assert TEXT[offset : offset + len(token)] == token
    assert logprobs.text_offset == sorted(logprobs.text_offset)
    assert logprobs.text_offset[-1] < len(TEXT)
    # Distinct tokens are distinct keys: none collapse into one "\ufffd".
    for top, (_, _, alternatives) in zip(logprobs.top_logprobs, entries, strict=True):
        assert top is not None and len(top) == len(alternatives)


def test_the_chosen_token_is_among_its_alternatives_as_openai_gives_it(
    tokenizer: ModelTokenizer,
) -> None:
    ids = tokenizer.encode(["Sea ok"], special_tokens=False)[0]
    others = [TokenLogprob(i, -3.0, ((ids[0] if i != ids[0] else ids[1], -0.5),)) for i in ids]

    logprobs = completion_logprobs(logprob_entries(others), tokenizer.token_bytes)

    assert logprobs.top_logprobs is not None
    for token, top in zip(logprobs.tokens, logprobs.top_logprobs, strict=True):
        assert top is not None and top[token] == -3.0 and len(top) == 2


def test_a_streams_offsets_go_on_from_its_earlier_chunks(tokenizer: ModelTokenizer) -> None:
    entries = logprob_entries(scored(tokenizer, TEXT))
    whole = completion_logprobs(entries, tokenizer.token_bytes).text_offset
    offsets = TextOffsets()
    streamed = [
        offset
        for entry in entries
        for offset in completion_logprobs([entry], tokenizer.token_bytes, offsets).text_offset
    ]
    fresh = [completion_logprobs([e], tokenizer.token_bytes).text_offset[0] for e in entries]

    assert streamed == whole
    assert fresh != whole  # chunks that each began at 0 would not pass


def test_token_text_writes_what_is_no_utf8_as_its_bytes() -> None:
    assert token_text(b" Paris") == " Paris"
    assert token_text(b"\xf0\x9f") == "bytes:\\xf0\\x9f"
