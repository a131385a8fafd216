"""An int8 export's weights, signed at load for CPUs with VNNI (textgen.backends.signed_int8): the
same numbers in the other byte form, every other byte of the graph as written, and, where the CPU
multiplies signed bytes exactly, the same logits (the comparison of tests/integration/
test_exact_answers.py, whose live check shows it failing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from tests.integration.test_exact_answers import traces
from textgen.backends import load_backend
from textgen.backends.signed_int8 import signed_graph, wants_signed
from textgen.backends.step_backend import StepBackend
from textgen.families import Framework
from textgen.settings import Settings

pytestmark = pytest.mark.slow


def initializers(model: onnx.ModelProto) -> dict[str, TensorProto]:
    return {t.name: t for t in model.graph.initializer}


@pytest.mark.parametrize("model", ["gpt2-int8", "llama-int8"])
def test_signing_flips_the_8_bit_weights_and_nothing_else(onnx_store: Path, model: str) -> None:
    path = onnx_store / model / "onnx" / "model.onnx"
    with signed_graph(path) as signed:
        assert signed is not None
        patched = initializers(onnx.load(str(signed)))
    written = initializers(onnx.load(str(path)))

    assert not signed.exists()  # the patched copy goes with the block

    assert written.keys() == patched.keys()
    flipped = [n for n in written if n.endswith((".u8", ".zero_point"))]
    assert len(flipped) >= 2 * (2 * 4 + 1)  # a weight and a zero point for every product
    for name in flipped:
        before, after = numpy_helper.to_array(written[name]), numpy_helper.to_array(patched[name])
        assert before.dtype == np.uint8 and after.dtype == np.int8
        assert np.array_equal(before.astype(np.int16) - 128, after.astype(np.int16))
    for name in written.keys() - set(flipped):
        assert written[name].SerializeToString() == patched[name].SerializeToString()


def test_a_graph_without_symmetric_8_bit_weights_is_served_as_written(
    onnx_store: Path, tmp_path: Path
) -> None:
    with signed_graph(onnx_store / "gpt2-test" / "onnx" / "model.onnx") as signed:
        assert signed is None  # float32

    graph = onnx.load(str(onnx_store / "gpt2-int8" / "onnx" / "model.onnx"))
    zero_point = next(t for t in graph.graph.initializer if t.name.endswith(".zero_point"))
    values = numpy_helper.to_array(zero_point).copy()
    values[0] = 127
    zero_point.CopyFrom(numpy_helper.from_array(values, zero_point.name))
    onnx.save(graph, tmp_path / "asymmetric.onnx")

    with signed_graph(tmp_path / "asymmetric.onnx") as signed:
        assert signed is None


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
    onnx_store: Path, model: str
) -> None:
    found: dict[str, dict[str, list[np.ndarray]]] = {}
    for weights in ("unsigned", "signed"):
        settings = Settings(cpu_runtime="onnx", onnx_int8_weights=weights)
        backend = load_backend(Framework.PYTORCH, onnx_store / model, settings)
        assert isinstance(backend, StepBackend)
        found[weights] = traces(backend.engine._runner)
        backend.engine.close()

    for way, logits in found["unsigned"].items():
        assert all(np.array_equal(a, b) for a, b in zip(logits, found["signed"][way], strict=True))
