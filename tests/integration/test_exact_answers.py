"""A request's answer never depends on what shares its batch. On the ONNX paths (int8 and float32:
every model with an export), a prompt's logits at every position are bit for bit the same alone,
inside a batch of prompts of other lengths, and joining rows already decoding while one of them
leaves; so are a scored prompt's (every position's logits from its prompt call). Logits, not
tokens: equal bits leave no drift for near-flat logits to hide, and a seeded
sampler given equal logits draws equal tokens (tests/unit/test_engine.py). Live check: ONNX
Runtime's own int8 graph (one activation range for the whole call) fails the same comparison.

PyTorch float32 (a model without an export) is not exact: its matrix products round differently
for one row than for several, so logits differ in their last bits with the batch. What holds
there, and is checked: every position's greedy token, logits within 1e-4."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from tests.support.ort_quantizer import quantize_int8
from textgen.backends import load_backend
from textgen.backends.onnx_backend import embedding_tables, session_options
from textgen.backends.onnx_runner import OnnxRunner
from textgen.backends.step_backend import StepBackend
from textgen.families import Framework
from textgen.settings import Settings

pytestmark = pytest.mark.slow

TARGET = [17, 301, 5, 99, 42, 7, 250, 3]  # the prompt whose logits are traced
CONTINUATION = [11, 60, 2, 181, 33, 90, 14, 77, 120, 9]  # fed back as its next tokens
COMPANY = [[4, 8, 15, 16, 23, 42, 108, 61, 52, 30, 12, 200, 6], [91], [5, 5, 5, 400, 1]]
# path: (the test store's model for each family, CPU_RUNTIME)
PATHS = {
    "onnx-int8": ({"gpt2": "gpt2-int8", "llama": "llama-int8"}, "onnx"),
    "onnx-float32": ({"gpt2": "gpt2-test", "llama": "llama-test"}, "onnx"),
    "torch-float32": ({"gpt2": "gpt2-test", "llama": "llama-test"}, "torch"),
}


@pytest.fixture(scope="module")
def backends(onnx_store: Path) -> Iterator[dict[tuple[str, str], StepBackend]]:
    loaded: dict[tuple[str, str], StepBackend] = {}
    for path, (models, runtime) in PATHS.items():
        settings = Settings(
            cpu_runtime=runtime,  # type: ignore[arg-type]
            torch_dtype="float32",
            device="cpu",
        )
        for family, model in models.items():
            step_backend = load_backend(Framework.PYTORCH, onnx_store / model, settings)
            assert isinstance(step_backend, StepBackend)
            loaded[path, family] = step_backend
    yield loaded
    for each in loaded.values():
        each.engine.close()


def traces(runner: Any) -> dict[str, list[np.ndarray]]:
    """TARGET's logits at each of its positions, three ways: alone; in the middle of a batch of
    prompts of other lengths; joining two rows four steps into their decoding, after which the
    first of them leaves (its row filled by the last, as the engine does)."""
    width = 64
    found: dict[str, list[np.ndarray]] = {}

    (first,) = runner.add_rows([TARGET], width, all_logits=False)
    found["alone"] = [first.copy()] + [runner.step([t])[0].copy() for t in CONTINUATION]
    runner.truncate(0)

    batch = runner.add_rows([COMPANY[0], TARGET, *COMPANY[1:]], width, all_logits=False)
    found["in a batch"] = [batch[1].copy()]
    for token in CONTINUATION:
        found["in a batch"].append(runner.step([3, token, 8, 9])[1].copy())
    runner.truncate(0)

    runner.add_rows(COMPANY[:2], width, all_logits=False)
    for token in range(4):
        runner.step([token + 20, token + 30])
    (joined,) = runner.add_rows([TARGET], width, all_logits=False)
    found["joining"] = [joined.copy()]
    for index, token in enumerate(CONTINUATION):
        if index == 3:  # the first row finishes: the target's row moves into its place
            runner.move_row(2, 0)
            runner.truncate(2)
        row = 2 if index < 3 else 0
        tokens = [40, 50, token] if index < 3 else [token, 50]
        found["joining"].append(runner.step(tokens)[row].copy())
    runner.truncate(0)
    return found


def scored_traces(runner: Any) -> dict[str, list[np.ndarray]]:
    """TARGET scored (every position's logits from its prompt call, as `echo` with `logprobs`
    asks): alone; padded in a batch of prompts of other lengths; and joining two rows already
    decoding, beside another prompt joining with it."""
    width = 64
    found = {"alone": list(runner.add_rows([TARGET], width, all_logits=True)[0])}
    runner.truncate(0)
    batch = runner.add_rows([COMPANY[0], TARGET, *COMPANY[1:]], width, all_logits=True)
    found["in a batch"] = list(batch[1])
    runner.truncate(0)
    runner.add_rows(COMPANY[:2], width, all_logits=False)
    for token in range(4):
        runner.step([token + 20, token + 30])
    found["joining"] = list(runner.add_rows([TARGET, COMPANY[2]], width, all_logits=True)[0])
    runner.truncate(0)
    return found


def differences(found: dict[str, list[np.ndarray]]) -> list[str]:
    """Which ways of running differ from running alone, and at which positions."""
    alone = found["alone"]
    return [
        f"{way}: position {position}"
        for way, logits in found.items()
        for position, (a, b) in enumerate(zip(alone, logits, strict=True))
        if not np.array_equal(a, b)
    ]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("path", ["onnx-int8", "onnx-float32"])
def test_a_prompts_logits_are_the_same_whatever_shares_its_batch(
    backends: dict[tuple[str, str], StepBackend], path: str, family: str
) -> None:
    runner = backends[path, family].engine._runner  # the engine idles: the runner is the test's

    found = traces(runner)

    assert differences(found) == []
    assert len(found["alone"]) == 1 + len(CONTINUATION)
    assert not np.array_equal(found["alone"][0], found["alone"][1])  # positions really differ


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("path", ["onnx-int8", "onnx-float32"])
def test_a_scored_prompts_logits_are_the_same_whatever_shares_its_batch(
    backends: dict[tuple[str, str], StepBackend], path: str, family: str
) -> None:
    found = scored_traces(backends[path, family].engine._runner)

    assert differences(found) == []
    assert len(found["alone"]) == len(TARGET)
    assert not np.array_equal(found["alone"][0], found["alone"][1])  # positions really differ


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_on_pytorch_greedy_tokens_hold_whatever_shares_the_batch(
    backends: dict[tuple[str, str], StepBackend], family: str
) -> None:
    found = traces(backends["torch-float32", family].engine._runner)

    for logits in found.values():
        assert [int(np.argmax(x)) for x in logits] == [int(np.argmax(x)) for x in found["alone"]]
        pairs = zip(found["alone"], logits, strict=True)
        assert all(np.allclose(a, b, rtol=0, atol=1e-4) for a, b in pairs)


@pytest.mark.parametrize("model", ["gpt2-test", "llama-test"])
def test_live_check_one_range_for_the_whole_call_fails_it(
    onnx_store: Path, tmp_path: Path, model: str
) -> None:
    export = onnx_store / model / "onnx"
    per_call = quantize_int8(export / "model.onnx", tmp_path / "per-call.onnx")
    session = ort.InferenceSession(str(per_call), session_options(Settings()))
    metadata = json.loads((export / "textgen.json").read_text())
    runner = OnnxRunner(session, metadata, 0, embedding_tables(export, metadata))

    assert differences(traces(runner)) != []
    assert differences(scored_traces(runner)) != []
