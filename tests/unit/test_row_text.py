"""A row's text as its tokens arrive: multi-byte characters are never split across pieces, and
text that might start a stop string is held back until it cannot."""

from __future__ import annotations

import pytest

from textgen.demo.store import gpt2_tokenizer
from textgen.engine.text import RowText

TEXT = "Héllo wörld, 你好 🎉 ça va? Ünïcödé ends here."


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return gpt2_tokenizer()


def pieces(tokenizer, text: str, stop: tuple[str, ...] = ()) -> tuple[list[str], RowText]:  # type: ignore[no-untyped-def]
    row = RowText(tokenizer.backend_tokenizer, stop)
    released = []
    for token_id in tokenizer(text)["input_ids"]:
        row.add(token_id)
        if row.stopped:
            break
        released.append(row.release())
    released.append(row.release(final=True))
    return released, row


def test_multi_byte_characters_are_never_split(tokenizer) -> None:  # type: ignore[no-untyped-def]
    ids = tokenizer(TEXT)["input_ids"]
    # Live check: the tokenizer does cut characters into byte pieces here.
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)

    released, row = pieces(tokenizer, TEXT)

    assert "".join(released) == TEXT == row.text
    assert not any("\ufffd" in piece for piece in released)


def test_text_is_cut_before_a_stop_string_even_across_pieces(tokenizer) -> None:  # type: ignore[no-untyped-def]
    stop = "d, 你"  # spans several tokens
    released, row = pieces(tokenizer, TEXT, stop=(stop, "never"))

    assert row.stopped
    assert row.text == TEXT[: TEXT.index(stop)]
    assert "".join(released) == row.text
    assert not any(stop[:2] in piece and piece.endswith(stop[:2]) for piece in released[:-1])
