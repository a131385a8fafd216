"""Our forward passes give Hugging Face's logits, whether rows prefill together, decode at
positions of their own, or join a cache other rows already use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.support.models import TINY_GPT2, TINY_LLAMA
from textgen.demo.store import build_gpt2, build_llama
from textgen.models import ForwardBatch, load_decoder

CPU = torch.device("cpu")
PROMPTS = [[464, 2068, 7586, 21831], [15496], [40, 1101, 257, 1049, 290, 314, 588, 11, 13]]
VARIANTS: dict[str, tuple[Any, dict[str, Any]]] = {
    "gpt2": (build_gpt2, TINY_GPT2),
    "llama": (build_llama, TINY_LLAMA),
    "llama-tied-gqa-bias": (
        build_llama,
        {
            **TINY_LLAMA,
            "tie_word_embeddings": True,
            "num_key_value_heads": 1,
            "attention_bias": True,
            "rope_theta": 500.0,
        },
    ),
    "llama-llama3-rope": (
        build_llama,
        {
            **TINY_LLAMA,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        },
    ),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    build, config = VARIANTS[request.param]
    path: Path = build(tmp_path_factory.mktemp("decoders") / request.param, **config)
    return path


def hf_logits(model_dir: Path, ids: list[int]) -> torch.Tensor:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.inference_mode():
        logits: torch.Tensor = model(torch.tensor([ids])).logits[0]
    return logits


def test_prefill_and_decode_give_hugging_faces_logits(model_dir: Path) -> None:
    decoder = load_decoder(model_dir, torch.float32, CPU)
    cache = decoder.new_cache()
    cache.reserve(len(PROMPTS), 32, keep_rows=0)
    continuation = [11, 262, 318]
    with torch.inference_mode():
        first = decoder.forward(ForwardBatch.prefill(PROMPTS, 0, 0, CPU), cache)
        lengths = torch.tensor([len(p) for p in PROMPTS])
        steps = []
        for token in continuation:  # every row decodes `token`, each at its own position
            tokens = torch.full((len(PROMPTS),), token)
            steps.append(decoder.forward(ForwardBatch.decode(tokens, lengths), cache))
            lengths = lengths + 1

    for row, prompt in enumerate(PROMPTS):
        expected = hf_logits(model_dir, prompt + continuation)
        torch.testing.assert_close(first[row], expected[len(prompt) - 1], rtol=1e-4, atol=1e-4)
        for step, logits in enumerate(steps):
            torch.testing.assert_close(
                logits[row], expected[len(prompt) + step], rtol=1e-4, atol=1e-4
            )


def test_a_row_joining_a_running_cache_gets_its_own_logits(model_dir: Path) -> None:
    decoder = load_decoder(model_dir, torch.float32, CPU)
    cache = decoder.new_cache()
    cache.reserve(2, 32, keep_rows=0)
    with torch.inference_mode():
        decoder.forward(ForwardBatch.prefill(PROMPTS[2:], 0, 0, CPU), cache)  # row 0, longer
        joined = decoder.forward(ForwardBatch.prefill(PROMPTS[:1], 1, 0, CPU), cache)  # row 1
        both = decoder.forward(
            ForwardBatch.decode(torch.tensor([5, 7]), torch.tensor([len(PROMPTS[2]), 4])), cache
        )

    torch.testing.assert_close(
        joined[0], hf_logits(model_dir, PROMPTS[0])[-1], rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(
        both[1], hf_logits(model_dir, [*PROMPTS[0], 7])[-1], rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(
        both[0], hf_logits(model_dir, [*PROMPTS[2], 5])[-1], rtol=1e-4, atol=1e-4
    )
    # Live check: the same step at a wrong position for the joined row gives other logits.
    with torch.inference_mode():
        cache.reserve(2, 32, keep_rows=2)
        wrong = decoder.forward(
            ForwardBatch.decode(torch.tensor([5, 7]), torch.tensor([len(PROMPTS[2]), 5])), cache
        )
    assert not torch.allclose(wrong[1], both[1], atol=1e-3)
