"""A BPE tokenizer stored in parts, for a faster start: its vocabulary (vocab.json form), its
merges (merges.txt form) and the rest of tokenizer.json (a small frame), written by the export.

`tokenizers` reads tokenizer.json through a generic JSON tree (a map per object, the vocabulary's
~50,000 entries among them) before it builds the model, holding the GIL; `BPE.from_file` reads a
vocabulary file straight into the model's map and merges line by line. SmolLM2's tokenizer loads
in about two thirds of the time this way (docs/performance.md). The parts are written only where,
put back together, they serialize exactly as tokenizer.json does, and they are served only
beside the tokenizer.json they were written from (its sha256 is recorded with them).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

PARTS_FRAME_FILE = "tokenizer.frame.json"
PARTS_VOCAB_FILE = "tokenizer.vocab.json"
PARTS_MERGES_FILE = "tokenizer.merges.txt"
PARTS_FILES = (PARTS_FRAME_FILE, PARTS_VOCAB_FILE, PARTS_MERGES_FILE)
_MERGES_HEADER = "#version: 0.2\n"  # what BPE.from_file skips, as merges.txt files begin
# The BPE model's options, kept in the frame's model entry and given to BPE.from_file.
_BPE_OPTIONS = (
    "dropout",
    "unk_token",
    "continuing_subword_prefix",
    "end_of_word_suffix",
    "fuse_unk",
    "byte_fallback",
    "ignore_merges",
)


def write_parts(tokenizer_file: Path, folder: Path) -> str | None:
    """Write `tokenizer_file`'s parts into `folder`: the sha256 of the tokenizer.json they stand
    for, or None (nothing left written) where it is no BPE tokenizer or its parts would not
    serialize exactly as it does."""
    source = tokenizer_file.read_bytes()
    spec = json.loads(source)
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        return None
    merges = [m.split(" ") if isinstance(m, str) else m for m in model.get("merges", [])]
    if any(len(pair) != 2 or any(" " in part for part in pair) for pair in merges):
        return None  # merges.txt separates a pair's parts with a space
    # The added tokens stay in the frame's vocabulary, so that reading it gives them their ids.
    added = {token["content"]: token["id"] for token in spec.get("added_tokens", [])}
    frame = {**spec, "model": {**model, "vocab": added, "merges": []}}
    (folder / PARTS_FRAME_FILE).write_text(json.dumps(frame, ensure_ascii=False), encoding="utf-8")
    vocab = json.dumps(model.get("vocab", {}), ensure_ascii=False)
    (folder / PARTS_VOCAB_FILE).write_text(vocab, encoding="utf-8")
    lines = "".join(f"{first} {second}\n" for first, second in merges)
    (folder / PARTS_MERGES_FILE).write_text(_MERGES_HEADER + lines, encoding="utf-8")
    if _serialized(load_parts(folder)) != _serialized(Tokenizer.from_str(source.decode("utf-8"))):
        for name in PARTS_FILES:
            (folder / name).unlink()
        return None
    return hashlib.sha256(source).hexdigest()


def load_parts(folder: Path) -> Tokenizer:
    """The tokenizer whose parts `folder` holds."""
    from tokenizers.models import BPE

    frame_text = (folder / PARTS_FRAME_FILE).read_text(encoding="utf-8")
    tokenizer = Tokenizer.from_str(frame_text)
    options = json.loads(frame_text)["model"]
    tokenizer.model = BPE.from_file(
        str(folder / PARTS_VOCAB_FILE),
        str(folder / PARTS_MERGES_FILE),
        **{name: options[name] for name in _BPE_OPTIONS if options.get(name) is not None},
    )
    return tokenizer


def parts_for(tokenizer_file: Path, folder: Path, written_from: Any) -> Path | None:
    """`folder`, if it holds parts written from this very `tokenizer_file` (`written_from`: the
    sha256 recorded with them); None where it holds none or `tokenizer_file` has changed since."""
    if not isinstance(written_from, str) or not all((folder / n).is_file() for n in PARTS_FILES):
        return None
    try:
        current = hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()
    except OSError:
        return None  # ModelTokenizer reports the missing file
    return folder if current == written_from else None


def _serialized(tokenizer: Tokenizer) -> Any:
    return json.loads(tokenizer.to_str())
