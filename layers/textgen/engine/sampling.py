"""Choosing each row's next token from its logits, on the CPU with numpy.

The order of the steps is Hugging Face's: repetition penalty, temperature, top-k, top-p, then a
draw. Each row draws from a generator of its own, seeded from the request's seed and the row's
index, so a seeded request gives the same text whatever else shares its batch.
"""

from __future__ import annotations

import numpy as np

from textgen.engine.params import SamplingParams


def row_generator(seed: int | None, row: int) -> np.random.Generator:
    # A negative seed is taken as its 64 bits unsigned (numpy's seeds are not negative): each
    # seed still names a stream of its own, and seeds of 0 and above keep theirs.
    entropy = None if seed is None else [seed % 2**64, row]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def choose_token(
    logits: np.ndarray,
    params: SamplingParams,
    rng: np.random.Generator,
    seen: np.ndarray | None = None,
) -> int:
    """The next token of one row. `logits` [vocab] is not modified; `seen` are the token ids
    the repetition penalty applies to."""
    scores = logits
    if params.repetition_penalty != 1.0 and seen is not None and seen.size:
        scores = logits.astype(np.float32, copy=True)
        picked = scores[seen]
        scores[seen] = np.where(
            picked > 0, picked / params.repetition_penalty, picked * params.repetition_penalty
        )
    if params.greedy:
        return int(np.argmax(scores))
    scores = scores.astype(np.float64) / params.temperature
    candidates = np.arange(scores.shape[0])
    if 0 < params.top_k < scores.shape[0]:
        candidates = np.argpartition(scores, -params.top_k)[-params.top_k :]
        scores = scores[candidates]
    probabilities = np.exp(scores - np.max(scores))
    probabilities /= probabilities.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probabilities, kind="stable")
        ranked = probabilities[order]
        # Keep the tokens before the running total reaches top_p, and always the first.
        keep = (np.cumsum(ranked) - ranked) < params.top_p
        candidates, probabilities = candidates[order[keep]], ranked[keep]
        probabilities = probabilities / probabilities.sum()
    cumulative = np.cumsum(probabilities)
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return int(candidates[min(index, len(candidates) - 1)])


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities of a row's logits, in float64 for stable sums."""
    shifted = logits.astype(np.float64) - logits.max()
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum())
    return result
