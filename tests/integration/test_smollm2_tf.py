"""framework "tf" on the real model: SmolLM2's export (tied embeddings, bfloat16 on disk) gives
PyTorch's greedy tokens; a flipped near-tie is allowed only where PyTorch's own margin is tiny."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from handlers.factory import create_app
from tests.support.chat import chat_prompts
from tests.support.parity import divergence_margin, greedy_outputs
from textgen.demo.store import SMOLLM2
from textgen.engine.handle import SequenceOutput
from textgen.families import Framework
from textgen.settings import Settings

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "What is 2 + 2?",
    "Write one sentence about the sea.",
    "Name three colours.",
]
MAX_TOKENS = 32
# float32 on both sides: their logits differ by about 1e-4. Two candidates closer than this in
# PyTorch's log-probabilities are a tie that either side may break; a real divergence is far
# above it (SmolLM2's greedy choices here lead by more than 0.1).
NEAR_TIE = 0.01


@pytest.fixture(scope="module")
def client(smollm2_tf_store: Path, settings: Settings) -> Iterator[TestClient]:
    # One XLA bucket for every request of this module (4 prompts, prompt + 32 tokens < 128),
    # compiled while the model loads.
    # PyTorch's side in float32 (the demo store's int8 export is a different model's rounding).
    changes = {"model_store": str(smollm2_tf_store), "tf_warmup_shapes": [(4, 128)]}
    serving = settings.model_copy(update={**changes, "cpu_runtime": "torch"})
    with TestClient(create_app(serving)) as c:
        yield c


@pytest.fixture(scope="module")
def prompts(smollm2_tf_store: Path) -> list[str]:
    return chat_prompts(smollm2_tf_store / SMOLLM2, QUESTIONS)


@pytest.fixture(scope="module")
def tf_outputs(client: TestClient, prompts: list[str]) -> list[SequenceOutput]:
    """The TensorFlow path's greedy outputs, once for both tests (a bucket of 4 x 128 tokens runs
    for seconds); the HTTP side of framework "tf" is test_tensorflow.py's."""
    return greedy_outputs(client, SMOLLM2, prompts, Framework.TENSORFLOW, max_tokens=MAX_TOKENS)


def test_tensorflow_answers_the_factual_question(tf_outputs: list[SequenceOutput]) -> None:
    first = tf_outputs[0]

    assert (first.text, first.finish_reason) == ("The capital of France is Paris.", "stop")


def test_tensorflow_gives_pytorchs_greedy_tokens(
    client: TestClient, prompts: list[str], tf_outputs: list[SequenceOutput]
) -> None:
    pt = greedy_outputs(client, SMOLLM2, prompts, max_tokens=MAX_TOKENS, logprobs=5)

    margins = [divergence_margin(p, t.token_ids) for p, t in zip(pt, tf_outputs, strict=True)]

    # A row may part only where PyTorch saw the two candidates as all but equal, and rarely.
    assert all(m is None or 0 <= m < NEAR_TIE for m in margins), margins
    assert sum(m is None for m in margins) >= len(prompts) - 1, margins
