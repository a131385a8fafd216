"""A model folder's tokenizer, served with the `tokenizers` library alone.

What `save_pretrained` writes: tokenizer.json (the fast tokenizer itself: encoding, special tokens,
decoding), tokenizer_config.json (special token names, maybe the chat template),
chat_template.jinja, generation_config.json (end tokens). Serving needs no transformers (and so
no torch, which transformers imports when installed): a cold start saves seconds. Chat templates
are rendered by transformers' own renderer, imported on the first chat request only (it needs
neither torch nor the rest of transformers), so they mean here what they mean there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from tokenizers.decoders import ByteLevel

from textgen.backends.imports import heavy_imports
from textgen.backends.tokenizer_parts import load_parts
from textgen.errors import InvalidRequest, ModelLoadFailed

TOKENIZER_FILE = "tokenizer.json"
_CONFIG = "tokenizer_config.json"
_TEMPLATE = "chat_template.jinja"
_GENERATION = "generation_config.json"
_SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token")


class ModelTokenizer:
    def __init__(self, model_dir: Path, parts: Path | None = None) -> None:
        """The tokenizer of `model_dir`, read from the folder of its parts where one is given
        (textgen.backends.tokenizer_parts: the same tokenizer, read faster)."""
        try:
            self.backend = (
                load_parts(parts) if parts else Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
            )
            config = _json(model_dir / _CONFIG)
            generation = _json(model_dir / _GENERATION)
        except (OSError, ValueError, Exception) as exc:
            what = f"tokenizer (its parts in {parts.name}/)" if parts else TOKENIZER_FILE
            raise ModelLoadFailed(f"model '{model_dir.name}' has no usable {what}: {exc}") from exc
        self.name = model_dir.name
        self.special_tokens = {
            key: text for key in _SPECIAL if (text := _token_text(config.get(key))) is not None
        }
        self.chat_template: str | None = config.get("chat_template")
        if (model_dir / _TEMPLATE).is_file():
            self.chat_template = (model_dir / _TEMPLATE).read_text(encoding="utf-8")
        self.eos_ids = self._end_tokens(generation.get("eos_token_id"))
        pad = self._id(self.special_tokens.get("pad_token"))
        # Padding is never attended to: any id will do.
        self.pad_id: int = pad if pad is not None else min(self.eos_ids, default=0)

    def encode(self, texts: list[str], special_tokens: bool = True) -> list[list[int]]:
        encodings = self.backend.encode_batch(texts, add_special_tokens=special_tokens)
        return [list(e.ids) for e in encodings]

    def token_bytes(self, token_id: int) -> bytes:
        """One token's own bytes. Alone, a token may hold part of a character (byte-level BPE
        splits emoji and many scripts' characters), which its decoded text shows as U+FFFD; its
        bytes, put together with its neighbours', give the character back."""
        text = self.decode([token_id])
        if "\ufffd" not in text:
            return text.encode()
        piece = self.backend.id_to_token(token_id) or ""
        if isinstance(self.backend.decoder, ByteLevel) and all(c in _BYTE_OF for c in piece):
            return bytes(_BYTE_OF[c] for c in piece)
        if fallback := _BYTE_FALLBACK.fullmatch(piece):  # sentencepiece's <0xF0> tokens
            return bytes([int(fallback.group(1), 16)])
        return text.encode()

    def decode(self, token_ids: list[int]) -> str:
        text: str = self.backend.decode(token_ids, skip_special_tokens=False)
        return text

    @property
    def vocab_size(self) -> int:
        """Ids 0 to vocab_size - 1 are tokens of this tokenizer (added ones included)."""
        size: int = self.backend.get_vocab_size(with_added_tokens=True)
        return size

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        if not self.chat_template:
            raise InvalidRequest(
                f"model '{self.name}' has no chat template; use the completions API with a "
                "prompt of your own",
                field="messages",
            )
        with heavy_imports:  # transformers' lazy imports are not thread-safe
            from jinja2 import TemplateError
            from transformers.utils.chat_template_utils import render_jinja_template

        try:
            rendered, _ = render_jinja_template(
                conversations=[messages],
                chat_template=self.chat_template,
                add_generation_prompt=True,
                **self.special_tokens,
            )
        except TemplateError as exc:  # e.g. roles in an order the template refuses
            raise InvalidRequest(
                f"the model's chat template refused these messages: {exc}", field="messages"
            ) from exc
        text: str = rendered[0]
        return text

    def _end_tokens(self, configured: Any) -> frozenset[int]:
        if configured is not None:
            return frozenset(configured if isinstance(configured, list) else [configured])
        eos = self._id(self.special_tokens.get("eos_token"))
        return frozenset() if eos is None else frozenset([eos])

    def _id(self, text: str | None) -> int | None:
        return None if text is None else self.backend.token_to_id(text)


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's characters and the bytes they stand for (GPT-2's mapping: printable
    bytes as themselves, the others shifted past 255)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    shifted = [b for b in range(256) if b not in printable]
    alphabet = {chr(b): b for b in printable}
    alphabet.update({chr(256 + n): b for n, b in enumerate(shifted)})
    return alphabet


_BYTE_OF = _byte_level_alphabet()
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json names it: a string, or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None
