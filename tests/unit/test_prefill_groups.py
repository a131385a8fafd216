"""How the ONNX runner splits a batch of prompts into prefill calls."""

from __future__ import annotations

import itertools
import random

from textgen.backends.onnx_runner import _CALL_COST_TOKENS, prefill_groups


def cost(lengths: list[int], groups: list[tuple[int, int]]) -> int:
    return sum(_CALL_COST_TOKENS + (stop - start) * lengths[stop - 1] for start, stop in groups)


def every_split(count: int) -> list[list[tuple[int, int]]]:
    splits = []
    for cuts in itertools.product([False, True], repeat=count - 1):
        bounds = [0, *(i + 1 for i, cut in enumerate(cuts) if cut), count]
        splits.append(list(itertools.pairwise(bounds)))
    return splits


def test_similar_prompts_run_in_one_call() -> None:
    assert prefill_groups([5]) == [(0, 1)]
    assert prefill_groups([4, 4, 6, 6]) == [(0, 4)]


def test_a_long_prompt_does_not_pad_short_ones() -> None:
    assert prefill_groups([1, 1, 1, 40]) == [(0, 3), (3, 4)]


def test_groups_cover_every_prompt_once_at_the_least_cost() -> None:
    generator = random.Random(7)
    for _ in range(200):
        lengths = sorted(generator.randint(1, 60) for _ in range(generator.randint(1, 8)))
        groups = prefill_groups(lengths)
        assert [i for start, stop in groups for i in range(start, stop)] == list(
            range(len(lengths))
        )
        least = min(cost(lengths, split) for split in every_split(len(lengths)))
        assert cost(lengths, groups) == least
    # live check: the cost tells splits apart (one call is not always the cheapest)
    assert cost([1, 1, 1, 40], [(0, 4)]) > cost([1, 1, 1, 40], prefill_groups([1, 1, 1, 40]))
