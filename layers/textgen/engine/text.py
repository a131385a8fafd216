"""The text of a row's generated tokens as it grows: decoded a token at a time by the tokenizer's
own streaming decoder (a multi-byte character is never split across pieces), and cut before the
first stop string. Text that could still turn out to start a stop string is held back."""

from __future__ import annotations

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream


class RowText:
    def __init__(self, tokenizer: Tokenizer, stop: tuple[str, ...] = ()) -> None:
        self._tokenizer = tokenizer
        self._decoder = DecodeStream(skip_special_tokens=True)
        self._stop = stop
        self._hold_back = max((len(s) for s in stop), default=1) - 1
        self.text = ""
        self.stopped = False  # a stop string was found; the text ends before it
        self._released = 0

    def add(self, token_id: int) -> None:
        piece = self._decoder.step(self._tokenizer, token_id)
        if not piece or self.stopped:
            return
        # A stop string may straddle the old text's end and the new piece.
        search_from = max(0, len(self.text) - self._hold_back)
        self.text += piece
        found = [i for s in self._stop if (i := self.text.find(s, search_from)) >= 0]
        if found:
            self.text = self.text[: min(found)]
            self.stopped = True

    def release(self, final: bool = False) -> str:
        """The text not released yet that can no longer change (all of it once `final`)."""
        end = len(self.text)
        if not (final or self.stopped):
            end = max(self._released, end - self._hold_back)
        piece = self.text[self._released : end]
        self._released = end
        return piece
