"""The near-tie rule of the TensorFlow/PyTorch comparison, on outputs made up for it."""

from __future__ import annotations

import math

from tests.support.parity import divergence_margin
from textgen.engine.handle import SequenceOutput, TokenLogprob


def output(ids: list[int], steps: list[TokenLogprob]) -> SequenceOutput:
    return SequenceOutput(index=0, prompt_tokens=3, token_ids=ids, logprobs=steps)


STEPS = [
    TokenLogprob(5, -0.1, ((5, -0.1), (6, -3.0))),
    TokenLogprob(7, -0.70, ((7, -0.70), (8, -0.705), (9, -4.0))),
]


def test_identical_tokens_have_no_margin() -> None:
    assert divergence_margin(output([5, 7], STEPS), [5, 7]) is None


def test_a_flipped_near_tie_has_a_tiny_margin() -> None:
    assert math.isclose(divergence_margin(output([5, 7], STEPS), [5, 8]) or 0, 0.005)


def test_a_real_divergence_has_a_large_margin() -> None:
    assert math.isclose(divergence_margin(output([5, 7], STEPS), [6, 7]) or 0, 2.9)
    assert divergence_margin(output([5, 7], STEPS), [5, 1]) == math.inf  # not even a candidate
    assert divergence_margin(output([5, 7], STEPS), [5]) == math.inf  # one stopped early
