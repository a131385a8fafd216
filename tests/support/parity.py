"""Comparing two frameworks' greedy tokens, where float noise may break a near-tie either way."""

from __future__ import annotations

from fastapi.testclient import TestClient

from textgen.engine.handle import SequenceOutput
from textgen.families import Family, Framework
from textgen.service import GenerationRequest


def divergence_margin(reference: SequenceOutput, other_ids: list[int]) -> float | None:
    """None when `other_ids` are the reference's tokens. Else, at the first token where they
    part, how much more likely the reference's token was than the other's in the reference's
    own log-probabilities (needs the reference generated with logprobs); infinity when the
    other's token was not even among the reference's top alternatives."""
    ids = reference.token_ids
    split = next((i for i, (a, b) in enumerate(zip(ids, other_ids, strict=False)) if a != b), None)
    if split is None:
        return None if len(ids) == len(other_ids) else float("inf")
    step = reference.logprobs[split]
    alternatives = dict(step.top)
    if other_ids[split] not in alternatives:
        return float("inf")
    return step.logprob - alternatives[other_ids[split]]


def greedy_outputs(
    client: TestClient,
    model: str,
    prompts: list[str],
    framework: Framework = Framework.PYTORCH,
    max_tokens: int = 32,
    logprobs: int | None = None,
) -> list[SequenceOutput]:
    """A LLaMA model's greedy outputs through the client's own service (with `logprobs`
    alternatives per token, for divergence_margin)."""
    service = client.app.state.service  # type: ignore[attr-defined]
    request = GenerationRequest(
        model, prompts, Family.LLAMA, framework=framework, max_tokens=max_tokens, logprobs=logprobs
    )
    outputs: list[SequenceOutput] = service.submit(request).wait(600)
    return outputs
