"""The activations our forward passes use, as Hugging Face's ACT2FN computes them (the same
expressions, so the same bits), without importing transformers' modeling code for them: that import
(torch's distributed tensors, sympy, dynamo) is about a second of CPU on a cold start. A name not
listed here is ACT2FN's own, imported when a model asks for it."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Activation = Callable[[torch.Tensor], torch.Tensor]


def new_gelu(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU, tanh approximation (transformers' NewGELUActivation)."""
    return (
        0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    )


KNOWN: dict[str, Activation] = {"gelu_new": new_gelu, "silu": F.silu, "swish": F.silu}


def activation(name: str) -> Activation:
    known = KNOWN.get(name)
    if known is not None:
        return known
    from transformers.activations import ACT2FN  # any other: transformers' own

    function: Activation = ACT2FN[name]
    return function
