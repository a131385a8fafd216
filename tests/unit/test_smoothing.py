"""Activation smoothing (textgen.convert.smoothing) on a tiny LLaMA with grouped KV heads: the
model's function is unchanged, and every product's input range is then shared evenly between its
activations and its weights. Its effect on int8 quality is judged on the trained model
(bench/quantization_choices.py; the fast path's bound in tests/integration/test_lm_eval.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from textgen.convert.onnx_graph import build_graph, token_embedding
from textgen.convert.smoothing import (
    ALPHA,
    calibration_windows,
    input_maxima,
    prompt_feeds,
    smooth_llama,
)
from textgen.model_files import ONNX_EMBEDDING_INPUT
from textgen.models import load_decoder


@pytest.fixture()
def llama(store_dir: Path) -> Any:
    return load_decoder(store_dir / "llama-test", torch.float32, torch.device("cpu"))


@pytest.fixture()
def windows(store_dir: Path, llama: Any) -> list[list[int]]:
    return calibration_windows(store_dir / "llama-test", llama.context_length)


def logits(decoder: Any, window: list[int]) -> np.ndarray:
    """Every position's logits of `window` as one prompt, through the decoder's float32 graph."""
    import onnxruntime as ort

    graph = build_graph(decoder, "llama")
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = prompt_feeds({value.name: value for value in graph.graph.input}, window)
    feeds[ONNX_EMBEDDING_INPUT] = token_embedding(decoder, "llama")
    (out,) = session.run(["logits"], feeds)
    return np.asarray(out)


def test_calibration_windows_fit_the_model(windows: list[list[int]], llama: Any) -> None:
    assert len(windows) >= 2
    assert {len(window) for window in windows} == {min(512, llama.context_length)}


def test_smoothing_leaves_the_models_function_unchanged(
    llama: Any, windows: list[list[int]]
) -> None:
    probe = windows[-1]
    before = logits(llama, probe)
    table = token_embedding(llama, "llama")
    norm = llama.blocks[0].attn_norm

    smooth_llama(llama, input_maxima(build_graph(llama, "llama"), table, windows))

    # The weights did change (by far more than rounding), the function did not.
    assert not torch.allclose(llama.blocks[0].attn_norm, norm, rtol=0.1)
    assert np.array_equal(token_embedding(llama, "llama"), table)  # the table is not rescaled
    after = logits(llama, probe)
    assert np.allclose(after, before, rtol=1e-4, atol=1e-4 * np.abs(before).max())
    # Live check: one fold undone (q/k/v's input no longer divided) is caught.
    llama.blocks[0].attn_norm = norm
    assert not np.allclose(
        logits(llama, probe), before, rtol=1e-4, atol=1e-4 * np.abs(before).max()
    )


def test_each_products_range_is_then_shared_evenly(
    store_dir: Path, llama: Any, windows: list[list[int]]
) -> None:
    assert ALPHA == 0.5  # s_j = sqrt(max|x_j| / max|w_j|): both become sqrt(max|x_j| max|w_j|)
    table = token_embedding(llama, "llama")
    smooth_llama(llama, input_maxima(build_graph(llama, "llama"), table, windows))

    measured = input_maxima(build_graph(llama, "llama"), table, windows)

    group, kv_channels = llama.heads // llama.kv_heads, llama.kv_heads * llama.head_dim
    for index, block in enumerate(llama.blocks):
        p = f"layers.{index}."
        for name, weight in (("qkv", block.qkv_w), ("gate_up", block.gate_up_w)):
            assert torch.allclose(measured[p + name], weight.abs().amax(0), rtol=1e-4)
        assert torch.allclose(measured[p + "down"], block.down_w.abs().amax(0), rtol=1e-4)
        # o's input: one factor for the query heads sharing a KV head.
        grouped = (llama.kv_heads, group, llama.head_dim)
        activations = measured[p + "o"].reshape(grouped).amax(1).reshape(kv_channels)
        weights = block.o_w.abs().amax(0).reshape(grouped).amax(1).reshape(kv_channels)
        assert torch.allclose(activations, weights, rtol=1e-4)
    assert torch.allclose(measured["lm_head"], llama.lm_head.abs().amax(0), rtol=1e-4)
    # Live check: before smoothing, the two differ.
    original: Any = load_decoder(store_dir / "llama-test", torch.float32, torch.device("cpu"))
    unsmoothed = input_maxima(build_graph(original, "llama"), table, windows)
    assert not torch.allclose(unsmoothed["lm_head"], original.lm_head.abs().amax(0), rtol=0.1)
