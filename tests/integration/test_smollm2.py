"""The demo store's trained model: SmolLM2-135M-Instruct, fetched from PyPI, converted from GGUF,
served on the fast path (the int8 export the demo store writes) and by our own LLaMA forward pass
on PyTorch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from safetensors import safe_open

from handlers.factory import create_app
from tests.integration.test_exact_answers import differences, traces
from tests.support.chat import chat_prompts
from textgen.backends import load_backend
from textgen.backends.step_backend import StepBackend
from textgen.convert.onnx_export import has_current_export
from textgen.demo.store import SMOLLM2
from textgen.families import Framework
from textgen.settings import Settings

pytestmark = pytest.mark.slow


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


@pytest.mark.parametrize(
    ("runtime", "answer"),
    [
        ("onnxruntime-int8", "The capital of France is Paris, France."),
        ("torch-float32", "The capital of France is Paris."),
    ],
)
def test_smollm2_answers_a_factual_question(
    demo_client: TestClient, torch_client: TestClient, demo_store: Path, runtime: str, answer: str
) -> None:
    client = torch_client if runtime.startswith("torch") else demo_client
    prompts = chat_prompts(demo_store / SMOLLM2, ["What is the capital of France?"])

    response = client.post(
        "/llama_model", json={"model_name": SMOLLM2, "prompts": prompts, "max_tokens": 24}
    )
    engines = client.get("/health").json()["engines"]

    assert response.status_code == 200, response.text
    assert engines[f"{SMOLLM2}:pt"]["runtime"].startswith(runtime)  # the demo's default: int8
    (result,) = response.json()["results"]
    assert result["generated_text"] == answer
    assert result["finish_reason"] == "stop"  # it ended its answer with <|im_end|>


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
