"""A tokenizer in parts (textgen.backends.tokenizer_parts) is the tokenizer it was written from,
or it is not written; and it is read only beside that very tokenizer.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import BPE, WordLevel

from textgen.backends.tokenizer_parts import (
    PARTS_FILES,
    PARTS_FRAME_FILE,
    load_parts,
    parts_for,
    write_parts,
)

TEXTS = [
    "The capital of France is",
    " naïve café, 😀\n\n\tend <|endoftext|> <|im_start|>user\nHi<|im_end|>",
    "",
]


def serialized(tokenizer: Tokenizer) -> object:
    return json.loads(tokenizer.to_str())


def small_bpe(folder: Path, merges: list[tuple[str, str]]) -> Path:
    """A BPE tokenizer of a few tokens with these merges, saved as tokenizer.json."""
    vocab = {"a": 0, "b": 1, "x": 2}
    for first, second in merges:
        vocab.setdefault(first, len(vocab))
        vocab.setdefault(second, len(vocab))
        vocab.setdefault(first + second, len(vocab))
    tokenizer = Tokenizer(BPE(vocab, merges))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


@pytest.mark.parametrize("model", ["gpt2-test", "llama-chat-test"])
def test_the_parts_are_the_tokenizer_they_were_written_from(
    store_dir: Path, tmp_path: Path, model: str
) -> None:
    source = store_dir / model / "tokenizer.json"
    whole = Tokenizer.from_file(str(source))

    written_from = write_parts(source, tmp_path)
    parts = load_parts(tmp_path)

    assert written_from == hashlib.sha256(source.read_bytes()).hexdigest()
    assert serialized(parts) == serialized(whole)
    for text in TEXTS:
        assert parts.encode(text).ids == whole.encode(text).ids
    assert parts.decode(whole.encode(TEXTS[1]).ids) == whole.decode(whole.encode(TEXTS[1]).ids)
    assert parts.get_vocab_size(with_added_tokens=True) == whole.get_vocab_size(True)
    # Live check: a frame that loses an added token's id serializes otherwise.
    frame = json.loads((tmp_path / PARTS_FRAME_FILE).read_text())
    added = frame["added_tokens"][0]["content"]
    del frame["model"]["vocab"][added]
    frame["added_tokens"][0]["id"] += 1
    (tmp_path / PARTS_FRAME_FILE).write_text(json.dumps(frame))
    assert serialized(load_parts(tmp_path)) != serialized(whole)


def test_parts_that_would_read_back_otherwise_are_not_written(tmp_path: Path) -> None:
    # merges.txt skips a line beginning "#version": this merge would be lost.
    lost = small_bpe(tmp_path / "lost", [("a", "b"), ("#version", "x")])
    spaced = tmp_path / "spaced" / "tokenizer.json"
    spaced.parent.mkdir()
    spec = json.loads(small_bpe(tmp_path / "kept", [("a", "b")]).read_text())
    spec["model"]["vocab"].update({"a b": 9, "a bx": 10})
    spec["model"]["merges"].append(["a b", "x"])  # a part with a space: no merges.txt line
    spaced.write_text(json.dumps(spec))
    word_level = tmp_path / "word-level" / "tokenizer.json"
    word_level.parent.mkdir()
    Tokenizer(WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(word_level))

    for source in (lost, spaced, word_level):
        assert write_parts(source, source.parent) is None, source
        assert not any((source.parent / name).exists() for name in PARTS_FILES), source
    # Live check: the same kind of tokenizer without the lost merge is written.
    assert write_parts(tmp_path / "kept" / "tokenizer.json", tmp_path / "kept") is not None


def test_parts_are_read_only_beside_the_tokenizer_they_stand_for(tmp_path: Path) -> None:
    source = small_bpe(tmp_path / "model", [("a", "b")])
    parts = tmp_path / "parts"
    parts.mkdir()
    written_from = write_parts(source, parts)

    assert parts_for(source, parts, written_from) == parts
    assert parts_for(source, parts, None) is None  # an export written before parts
    assert parts_for(tmp_path / "missing.json", parts, written_from) is None
    source.write_text(json.dumps(json.loads(source.read_text()), indent=1))  # changed since
    assert parts_for(source, parts, written_from) is None
    source.write_bytes(source.read_bytes())
    assert parts_for(source, parts, hashlib.sha256(source.read_bytes()).hexdigest()) == parts
    (parts / PARTS_FILES[1]).unlink()
    assert parts_for(source, parts, hashlib.sha256(source.read_bytes()).hexdigest()) is None
