"""The demo store's trained model: SmolLM2-135M-Instruct, fetched from PyPI, converted from GGUF,
served on the fast path (the int8 export the demo store writes) and by our own LLaMA forward pass
on PyTorch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors import safe_open

from handlers.factory import create_app
from tests.integration.test_exact_answers import differences, traces
from tests.support.chat import chat_prompts
from tests.support.parity import divergence_margin, greedy_outputs
from tests.unit.test_checkpoint import differences as checkpoint_differences
from textgen.backends import load_backend
from textgen.backends.step_backend import StepBackend
from textgen.convert.onnx_export import has_current_export
from textgen.demo.store import SMOLLM2
from textgen.families import Framework
from textgen.models import FAMILIES, load_with_transformers
from textgen.models.checkpoint import read_checkpoint
from textgen.settings import Settings

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "What is 2 + 2?",
    "Write one sentence about the sea.",
    "Name three colours.",
]
INT8_NEAR_TIE = 1.0  # nats


@pytest.fixture(scope="module")
def demo_client(demo_store: Path, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"model_store": str(demo_store)}))) as c:
        yield c


@pytest.fixture(scope="module")
def torch_client(demo_store: Path, settings: Settings) -> Iterator[TestClient]:
    changes = {"model_store": str(demo_store), "cpu_runtime": "torch"}
    with TestClient(create_app(settings.model_copy(update=changes))) as c:
        yield c


def test_the_import_keeps_the_model_as_it_was(demo_store: Path) -> None:
    model = demo_store / SMOLLM2
    config = json.loads((model / "config.json").read_text())
    generation = json.loads((model / "generation_config.json").read_text())
    with safe_open(str(model / "model.safetensors"), "pt") as weights:
        names = set(weights.keys())
        dtypes = {weights.get_slice(name).get_dtype() for name in names}

    assert config["model_type"] == "llama"
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        30,
        576,
        49152,
    )
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (9, 3)
    assert "quantization_config" not in config  # plain tensors, loadable without gguf
    assert config["tie_word_embeddings"] is True
    assert "lm_head.weight" not in names  # tied: stored once, as the embeddings
    assert dtypes == {"BF16"}
    assert generation["eos_token_id"] == 2  # <|im_end|>
    assert "<|im_start|>" in (model / "chat_template.jinja").read_text()


def test_smollm2_read_from_its_files_is_transformers_decoder(demo_store: Path) -> None:
    model_dir = demo_store / SMOLLM2  # bfloat16 on disk, tied embeddings
    for dtype in (torch.float32, torch.bfloat16):
        ours = read_checkpoint(model_dir, FAMILIES, dtype, torch.device("cpu"))
        theirs = load_with_transformers(model_dir, dtype, torch.device("cpu"))
        assert ours is not None
        assert checkpoint_differences(ours, theirs) == []


def test_smollm2_answers_a_factual_question(torch_client: TestClient, demo_store: Path) -> None:
    prompts = chat_prompts(demo_store / SMOLLM2, ["What is the capital of France?"])

    response = torch_client.post(
        "/llama_model", json={"model_name": SMOLLM2, "prompts": prompts, "max_tokens": 24}
    )

    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["generated_text"] == "The capital of France is Paris."
    assert result["finish_reason"] == "stop"  # it ended its answer with <|im_end|>


def test_the_fast_path_keeps_float32s_answers_but_for_near_ties(
    demo_client: TestClient, torch_client: TestClient, demo_store: Path
) -> None:
    prompts = chat_prompts(demo_store / SMOLLM2, QUESTIONS)

    float32 = greedy_outputs(torch_client, SMOLLM2, prompts, logprobs=5)
    int8 = greedy_outputs(demo_client, SMOLLM2, prompts)
    engines = demo_client.get("/health").json()["engines"]

    assert engines[f"{SMOLLM2}:pt"]["runtime"].startswith("onnxruntime-int8")  # the default
    margins = [divergence_margin(f, i.token_ids) for f, i in zip(float32, int8, strict=True)]
    # A row may part only where float32 itself all but tied: int8's rounding moves log-
    # probabilities by tenths of a nat (on this model, rows parted at margins up to 0.5).
    assert all(m is None or 0 <= m < INT8_NEAR_TIE for m in margins), margins
    # Live check: another answer parts from float32's where float32 was sure.
    elsewhere = divergence_margin(float32[0], int8[1].token_ids)
    assert elsewhere is not None and elsewhere >= INT8_NEAR_TIE


def test_every_demo_model_has_its_int8_export(demo_store: Path) -> None:
    for name in ("gpt2-tiny", "llama-tiny", SMOLLM2):
        assert has_current_export(demo_store / name), name
        metadata = json.loads((demo_store / name / "onnx" / "textgen.json").read_text())
        assert metadata["precision"] == "int8"
    assert not has_current_export(demo_store)  # live check: a folder without one


def test_smollm2_logits_on_the_fast_path_are_the_same_whatever_shares_the_batch(
    demo_store: Path,
) -> None:
    backend = load_backend(Framework.PYTORCH, demo_store / SMOLLM2, Settings(cpu_runtime="onnx"))
    assert isinstance(backend, StepBackend)
    try:
        assert differences(traces(backend.engine._runner)) == []
    finally:
        backend.engine.close()


def test_the_demo_store_lists_it_beside_the_tiny_models(demo_client: TestClient) -> None:
    models = {m["name"]: m["family"] for m in demo_client.get("/models").json()["models"]}

    assert models == {"gpt2-tiny": "gpt2", "llama-tiny": "llama", SMOLLM2: "llama"}
