"""Comparing two frameworks' greedy tokens, where float noise may break a near-tie either way."""

from __future__ import annotations

from textgen.engine.handle import SequenceOutput


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
