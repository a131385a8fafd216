"""`textgen import-gguf`: a GGUF file (llama.cpp's format) into a model folder of the store.

Hugging Face's GGUF loader reads the file and dequantizes its weights. A model it loaded keeps
its GGUF quantization settings and refuses `save_pretrained`, so its weights are copied into a
fresh model of the same class, which saves as any other (tied embeddings stay tied: the fresh
model ties them from its config).

The loader parses the file's header three times (for the config, the tokenizer and the weights;
SmolLM2's holds its 49,152 tokens) and builds gguf's map of tensor names once per module of the
model (397 times for SmolLM2, the same map each time): during an import the three share one parse
(`_one_parse`) and the map is built once per architecture. The demo store, which imports SmolLM2,
built in 45.1 s on two cores before, 30.9 s so (bench/build_cost.py).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from textgen.errors import ArtifactCorrupt, InvalidRequest, ModelLoadFailed, UnsupportedModel
from textgen.families import Family
from textgen.staging import staged_folder

# GGUF's `general.architecture` of the families this service serves.
SUPPORTED_ARCHITECTURES = ("llama", "gpt2")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _read(reader_class: Any, gguf_file: Path) -> Any:
    if not Path(gguf_file).is_file():
        raise InvalidRequest(f"{gguf_file} is not a file")
    try:
        return reader_class(gguf_file)
    except (ValueError, IndexError, KeyError, OSError) as exc:  # what a bad file raises there
        raise _unreadable(gguf_file, exc) from exc


def _architecture(reader: Any, gguf_file: Path) -> str:
    try:
        architecture = reader.fields["general.architecture"].contents()
    except (ValueError, IndexError, KeyError) as exc:
        raise _unreadable(gguf_file, exc) from exc
    if not isinstance(architecture, str):
        raise ArtifactCorrupt(f"{gguf_file} has no text general.architecture")
    return architecture


def _unreadable(gguf_file: Path, exc: Exception) -> ArtifactCorrupt:
    return ArtifactCorrupt(
        f"{gguf_file} is not a readable GGUF file (corrupt or truncated?): {exc}"
    )


def import_gguf(gguf_file: Path, target: Path, dtype: str = "bfloat16") -> Path:
    """Write `target` (weights as safetensors in `dtype`, tokenizer with its chat template,
    generation config) from a GGUF file; an existing `target` is left alone."""
    return import_gguf_copies(gguf_file, {Path(target): dtype})[0]


def import_gguf_copies(gguf_file: Path, targets: dict[Path, str]) -> list[Path]:
    """`import_gguf` into each target folder in its own dtype, reading the file once (its
    dequantization and its tokenizer's conversion are most of an import's time)."""
    gguf_file = Path(gguf_file)
    for target, dtype in targets.items():
        if dtype not in DTYPES:
            raise InvalidRequest(f"dtype {dtype!r}: use one of {', '.join(DTYPES)}", field="dtype")
        if Path(target).exists():
            raise InvalidRequest(f"{target} already exists; pick another name or remove it first")
    with _one_parse(gguf_file) as reader:
        architecture = _architecture(reader, gguf_file)
        if architecture not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedModel(
                f"{gguf_file.name} holds a {architecture!r} model; this service serves "
                f"{' and '.join(SUPPORTED_ARCHITECTURES)} models only"
            )
        tokenizer, loaded = _load(gguf_file)
    model_type = loaded.config.model_type
    if model_type not in {family.value for family in Family}:  # e.g. llama.cpp's "mistral"
        raise UnsupportedModel(f"{gguf_file.name} loads as a {model_type!r} model, not served here")
    for target, dtype in targets.items():
        model = _saveable_copy(loaded).to(DTYPES[dtype])  # each from the float32 weights
        with staged_folder(Path(target)) as staging:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
    return [Path(target) for target in targets]


@contextmanager
def _one_parse(gguf_file: Path) -> Iterator[Any]:
    """The file parsed once (a gguf.GGUFReader, yielded): Hugging Face's loader, which imports
    gguf's reader and name map where it calls them, gets this parse for this file and one name
    map per architecture until the block ends. Imports run one at a time (a command, the demo
    store's build), never beside another reader of GGUF files in the same process."""
    import gguf

    reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    reader = _read(reader_class, gguf_file)

    def parse(path: Any, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs and Path(path) == gguf_file:
            return reader
        return reader_class(path, *args, **kwargs)

    vars(gguf).update(GGUFReader=parse, get_tensor_name_map=functools.cache(name_map))
    try:
        yield reader
    finally:
        vars(gguf).update(GGUFReader=reader_class, get_tensor_name_map=name_map)


def _load(gguf_file: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32, local_files_only=True
        )
    except (ValueError, KeyError, OSError, NotImplementedError) as exc:
        raise ModelLoadFailed(f"{gguf_file.name} could not be converted: {exc}") from exc
    return tokenizer, model


def _saveable_copy(loaded: Any) -> Any:
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are plain tensors now
    model = type(loaded)(config)  # ties embeddings when the config says so
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = copy.deepcopy(loaded.generation_config)
    return model.eval()
