"""A model folder read straight from its config.json and safetensors files, into our forward pass
of its family, without transformers' loader: importing that loader and building its model classes
is about 2 s of CPU, which every process's first PyTorch model paid (a cold start, each server
of the test suite). What this reader does not know in full goes to transformers' loader as before
(textgen.models.load_decoder): .bin weights, a config that leaves out a key the forward pass reads
(transformers would fill in its default), weight names of another layout, untied output weights
that are missing, rotary embeddings other than the default."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from safetensors.torch import load_file

SINGLE_FILE = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"


def read_weights(model_dir: Path) -> dict[str, torch.Tensor] | None:
    """Every tensor of the folder's safetensors (one file, or the shards its index names); None
    where it has none."""
    if (model_dir / SINGLE_FILE).is_file():
        return load_file(model_dir / SINGLE_FILE)
    if not (model_dir / SHARD_INDEX).is_file():
        return None
    index = json.loads((model_dir / SHARD_INDEX).read_text())
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index["weight_map"].values())):
        weights.update(load_file(model_dir / shard))
    return weights


def read_checkpoint(
    model_dir: Path, families: dict[str, Any], dtype: torch.dtype, device: torch.device
) -> Any | None:
    """The folder's decoder, its weights in `dtype` on `device`; None where transformers' loader
    is needed."""
    config = json.loads((model_dir / "config.json").read_text())
    family = families.get(config.get("model_type"))
    if family is None or "tie_word_embeddings" not in config:
        return None
    weights = read_weights(model_dir)
    if weights is None:
        return None
    if config["tie_word_embeddings"]:
        weights.pop("lm_head.weight", None)  # transformers ties it to the input embedding
    elif "lm_head.weight" not in weights:
        return None  # transformers would make one up (at random), and warn
    weights = {name: tensor.to(dtype) for name, tensor in weights.items()}
    try:
        return family.from_checkpoint(SimpleNamespace(**config), weights, device)
    except (AttributeError, KeyError):  # a config key or a weight of another layout
        return None
