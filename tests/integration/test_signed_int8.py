"""An int8 export's weights in the form the CPU wants (textgen.backends.signed_int8): stored signed,
flipped to unsigned in memory where the CPU lacks VNNI (and an older export's unsigned ones to
signed where it has it): the same numbers in the other byte form, every other tensor as written,
and, where the CPU multiplies signed bytes exactly, the same logits (the comparison of
tests/integration/test_exact_answers.py, whose live check shows it failing)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from tests.integration.test_exact_answers import traces
from tests.support.onnx_exports import as_format_3
from textgen.backends import load_backend
from textgen.backends.signed_int8 import FlippedGraph, Int8Weights, flipped_graph, wants_signed
from textgen.backends.step_backend import StepBackend
from textgen.families import Framework
from textgen.settings import Settings

pytestmark = pytest.mark.slow


def arrays(model: onnx.ModelProto, external: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every initializer's values; those kept outside the graph from `external`."""
    return {
        t.name: external[t.name]
        if t.data_location == TensorProto.EXTERNAL
        else numpy_helper.to_array(t)
        for t in model.graph.initializer
    }


def flipped_arrays(flipped: FlippedGraph) -> dict[str, np.ndarray]:
    return arrays(onnx.load_from_string(flipped.model), flipped.external)


def stored_arrays(path: Path) -> dict[str, np.ndarray]:
    return arrays(onnx.load(str(path)), {})


def check_flip(stored: dict[str, np.ndarray], flipped: dict[str, np.ndarray], to: type) -> None:
    """Each 8-bit weight and zero point in the other form (top bit flipped, the same numbers:
    weight - zero point unchanged), every other tensor as it was."""
    assert stored.keys() == flipped.keys()
    eight_bit = [n for n in stored if n.endswith((".q8", ".u8", ".zero_point"))]
    assert len(eight_bit) >= 2 * (2 * 4 + 1)  # a weight and a zero point for every product
    for name in eight_bit:
        before, after = stored[name], flipped[name]
        assert after.dtype == to and before.dtype != to
        assert np.array_equal(before.view(np.uint8) ^ 0x80, after.view(np.uint8))
        if name.endswith(".zero_point"):
            continue
        zero_point = name.rsplit(".", 1)[0] + ".zero_point"
        centred_before, centred_after = (
            values.astype(np.int16) - zero.astype(np.int16)
            for values, zero in ((before, stored[zero_point]), (after, flipped[zero_point]))
        )
        assert np.array_equal(centred_before, centred_after)
    for name in stored.keys() - set(eight_bit):
        assert np.array_equal(stored[name], flipped[name])


@pytest.mark.parametrize("model", ["gpt2-int8", "llama-int8"])
def test_stored_signed_weights_flip_to_unsigned_and_nothing_else_changes(
    onnx_store: Path, model: str
) -> None:
    path = onnx_store / model / "onnx" / "model.onnx"
    assert flipped_graph(path, signed=True) is None  # stored signed: nothing to do

    flipped = flipped_graph(path, signed=False)

    assert flipped is not None and flipped.external  # the weights file's tensors, from memory
    check_flip(stored_arrays(path), flipped_arrays(flipped), np.uint8)


@pytest.mark.parametrize("model", ["gpt2-int8", "llama-int8"])
def test_an_older_exports_unsigned_weights_flip_to_signed(
    onnx_store: Path, tmp_path: Path, model: str
) -> None:
    older = as_format_3(shutil.copytree(onnx_store / model, tmp_path / model))
    path = older / "onnx" / "model.onnx"
    assert flipped_graph(path, signed=False) is None

    flipped = flipped_graph(path, signed=True)

    assert flipped is not None and not flipped.external  # weights inside the graph
    check_flip(stored_arrays(path), flipped_arrays(flipped), np.int8)


def test_a_graph_without_symmetric_8_bit_weights_is_served_as_written(
    onnx_store: Path, tmp_path: Path
) -> None:
    assert flipped_graph(onnx_store / "gpt2-test" / "onnx" / "model.onnx", True) is None  # float32

    older = as_format_3(shutil.copytree(onnx_store / "gpt2-int8", tmp_path / "gpt2-int8"))
    path = older / "onnx" / "model.onnx"
    graph = onnx.load(str(path))
    zero_point = next(t for t in graph.graph.initializer if t.name.endswith(".zero_point"))
    values = numpy_helper.to_array(zero_point).copy()
    values[0] = 127
    zero_point.CopyFrom(numpy_helper.from_array(values, zero_point.name))
    onnx.save(graph, path)
    assert flipped_graph(path, signed=True) is None

    values[0] = 128  # live check: symmetric again, it flips
    zero_point.CopyFrom(numpy_helper.from_array(values, zero_point.name))
    onnx.save(graph, path)
    assert flipped_graph(path, signed=True) is not None


def test_external_data_must_lie_beside_the_graph(onnx_store: Path, tmp_path: Path) -> None:
    model = shutil.copytree(onnx_store / "gpt2-int8", tmp_path / "gpt2-int8")
    path = model / "onnx" / "model.onnx"
    graph = onnx.load(str(path), load_external_data=False)
    tensor = next(t for t in graph.graph.initializer if t.data_location == TensorProto.EXTERNAL)
    entry = next(e for e in tensor.external_data if e.key == "location")
    entry.value = "../model.onnx.data"
    onnx.save(graph, path)

    with pytest.raises(ValueError, match="not a file beside the graph"):
        flipped_graph(path, signed=False)


def test_auto_signs_on_cpus_with_vnni_only() -> None:
    assert wants_signed("auto", frozenset({"avx2", "avx512f", "avx512_vnni"}))
    assert wants_signed("auto", frozenset({"avx2", "avx_vnni"}))
    assert not wants_signed("auto", frozenset({"avx2", "avx512f", "avx512bw"}))
    assert not wants_signed("auto", frozenset())
    assert wants_signed("signed", frozenset()) and not wants_signed(
        "unsigned", frozenset({"avx_vnni"})
    )


@pytest.mark.skipif(not wants_signed("auto"), reason="signed bytes are exact on CPUs with VNNI")
@pytest.mark.parametrize("model", ["gpt2-int8", "llama-int8"])
def test_on_a_cpu_with_vnni_signed_weights_give_the_same_logits(
    onnx_store: Path, tmp_path: Path, model: str
) -> None:
    older = as_format_3(shutil.copytree(onnx_store / model, tmp_path / model))
    found: dict[str, dict[str, list[np.ndarray]]] = {}
    # Stored signed: mapped, or flipped to unsigned; stored unsigned (format 3), flipped to signed.
    ways: dict[str, tuple[Path, Int8Weights]] = {
        "signed": (onnx_store / model, "signed"),
        "unsigned": (onnx_store / model, "unsigned"),
        "older, signed": (older, "signed"),
    }
    for way, (folder, weights) in ways.items():
        settings = Settings(cpu_runtime="onnx", onnx_int8_weights=weights)
        backend = load_backend(Framework.PYTORCH, folder, settings)
        assert isinstance(backend, StepBackend)
        assert backend.engine.runtime.endswith("-signed") == (weights == "signed")
        found[way] = traces(backend.engine._runner)
        backend.engine.close()

    for way in ("unsigned", "older, signed"):
        for call, logits in found["signed"].items():
            assert all(np.array_equal(a, b) for a, b in zip(logits, found[way][call], strict=True))
