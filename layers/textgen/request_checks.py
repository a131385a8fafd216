"""A request checked against the service's limits before any engine sees it."""

from __future__ import annotations

import re
from collections.abc import Sequence

from textgen.errors import InvalidRequest, prompt_label
from textgen.generation import GenerationRequest
from textgen.settings import Settings

TASKS = ("text-generation",)

# Control characters other than whitespace (tab, line feed, vertical tab, form feed, carriage
# return: page breaks are common in real text); lone UTF-16 surrogates (JSON's "\ud800" escapes),
# which no text encoding can carry to the tokenizer.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ud800-\udfff]")


def checked_max_tokens(
    request: GenerationRequest, prompts: Sequence[str | list[int]], limits: Settings
) -> int:
    """Check the request, its `prompts` (text, or token ids; each runs `request.choices`
    times), against the limits; the number of new tokens it asks for. A prompt of ids may hold
    as many ids as a text prompt characters (a token is one character or more); its ids are
    checked against the model's vocabulary once it is loaded."""
    max_tokens = limits.default_max_tokens if request.max_tokens is None else request.max_tokens
    if request.task not in TASKS:
        raise InvalidRequest(
            f"unknown task {request.task!r}; this service supports: {', '.join(TASKS)}",
            field="task",
        )
    name = request.prompt_name
    if not prompts:
        raise InvalidRequest(f"{name} must hold at least one prompt", field=name)
    rows = len(prompts) * request.choices
    if rows > limits.max_prompts:
        each = f" x n={request.choices}" if request.choices > 1 else ""
        raise InvalidRequest(
            f"{len(prompts)} prompts{each} is more than the limit of {limits.max_prompts}",
            field=name,
        )
    for index, prompt in enumerate(prompts):
        label = prompt_label(name, index)
        if not prompt:
            raise InvalidRequest(f"{label} is empty", field=name)
        if isinstance(prompt, list):
            if len(prompt) > limits.max_prompt_chars:
                raise InvalidRequest(
                    f"{label} is {len(prompt)} token ids, more than the limit of "
                    f"{limits.max_prompt_chars}",
                    field=name,
                )
            continue
        if bad := _unprintable(prompt):
            raise InvalidRequest(f"{label} holds {bad}, which a prompt may not", field=name)
        if len(prompt) > limits.max_prompt_chars:
            raise InvalidRequest(
                f"{label} is {len(prompt)} characters, more than the limit of "
                f"{limits.max_prompt_chars}",
                field=name,
            )
    least = 0 if request.prompt_logprobs else 1  # 0 new tokens: scoring the prompt only
    if not least <= max_tokens <= limits.max_new_tokens_cap:
        raise InvalidRequest(
            f"max_tokens must be between {least} and {limits.max_new_tokens_cap}, got {max_tokens}",
            field="max_tokens",
        )
    request.sampling.validate()
    return max_tokens


def _unprintable(text: str) -> str | None:
    found = _UNPRINTABLE.search(text)
    return None if found is None else f"the character U+{ord(found.group()):04X}"
