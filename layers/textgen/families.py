"""Model families (architectures) this service serves, and the frameworks it serves them with."""

from __future__ import annotations

from enum import StrEnum

from textgen.errors import InvalidRequest

UNKNOWN_FAMILY = "unknown"  # listed, but not servable: its config.json could not be read


class Family(StrEnum):
    GPT2 = "gpt2"
    LLAMA = "llama"


class Framework(StrEnum):
    PYTORCH = "pt"
    TENSORFLOW = "tf"


def parse_framework(value: str) -> Framework:
    try:
        return Framework(value)
    except ValueError:
        raise InvalidRequest(
            f"unknown framework {value!r}; use one of: " + ", ".join(f.value for f in Framework),
            field="framework",
        ) from None
