"""The fast CPU path: `textgen export-onnx` graphs served by ONNX Runtime under the same engine,
endpoints and semantics as PyTorch. In float32 the greedy tokens are PyTorch's, also for rows
joining a running batch; int8 is judged by perplexity on the real model (bench/cpu_decoding.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from tokenizers import Tokenizer

from handlers.factory import create_app
from tests.support.engine_checks import PROMPTS, join_mid_decode
from tests.support.fresh_process import generate_in_fresh_process
from tests.support.onnx_exports import as_format_3
from tests.support.ort_quantizer import int8_weights, quantize_int8
from tests.support.servers import console_script
from textgen.backends import load_backend
from textgen.backends.onnx_runner import OnnxRunner, prefill_groups
from textgen.backends.signed_int8 import Int8Weights, wants_signed
from textgen.backends.step_backend import StepBackend
from textgen.backends.tokenizer_parts import PARTS_FILES, PARTS_VOCAB_FILE
from textgen.backends.torch_runner import TorchRunner
from textgen.convert.onnx_export import ensure_export, has_current_export
from textgen.engine import Job
from textgen.errors import ModelLoadFailed
from textgen.families import Framework
from textgen.manifest import build_manifest
from textgen.model_files import ONNX_EXPORT_FORMAT
from textgen.settings import Settings

pytestmark = pytest.mark.slow

MIXED = ["Hi", "The quick brown fox jumps over the lazy dog and then", "Numbers: 1, 2, 3"]
# Three short prompts and a long one: prefilled as two calls (see prefill_groups).
SPREAD = [
    "Hi",
    "Yes",
    "No way",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was "
    "the age of foolishness, it was the epoch of belief, it was the epoch of incredulity",
]
FAMILIES = [("/gpt2_model", "gpt2-test"), ("/llama_model", "llama-test")]
# What serves an int8 export on this CPU (textgen.backends.signed_int8).
INT8_RUNTIME = "onnxruntime-int8-signed" if wants_signed("auto") else "onnxruntime-int8"


def client_for(store: Path, settings: Settings, runtime: str) -> TestClient:
    changes = {"model_store": str(store), "cpu_runtime": runtime}
    return TestClient(create_app(settings.model_copy(update=changes)))


@pytest.fixture(scope="module")
def clients(onnx_store: Path, settings: Settings) -> Iterator[dict[str, TestClient]]:
    with (
        client_for(onnx_store, settings, "torch") as torch_client,
        client_for(onnx_store, settings, "auto") as auto_client,
    ):
        yield {"torch": torch_client, "onnx": auto_client}


@pytest.mark.parametrize(("path", "model"), FAMILIES)
def test_onnx_runtime_gives_pytorchs_greedy_tokens(
    clients: dict[str, TestClient], path: str, model: str
) -> None:
    answers = {}
    for runtime, client in clients.items():
        answers[runtime] = [
            client.post(path, json={"model_name": model, "prompts": MIXED, "max_tokens": n}).json()
            for n in (5, 17)
        ]
    engines = {rt: c.get("/health").json()["engines"] for rt, c in clients.items()}

    assert [a["results"] for a in answers["onnx"]] == [a["results"] for a in answers["torch"]]
    assert len({r["generated_text"] for r in answers["onnx"][1]["results"]}) == len(MIXED)
    assert engines["onnx"][f"{model}:pt"]["runtime"] == "onnxruntime-float32"
    assert engines["torch"][f"{model}:pt"]["runtime"] == "torch-float32"


@pytest.mark.parametrize(("path", "model"), FAMILIES)
def test_prompts_of_very_different_lengths_prefill_in_groups_with_pytorchs_tokens(
    clients: dict[str, TestClient], path: str, model: str, onnx_store: Path
) -> None:
    body = {"model_name": model, "prompts": SPREAD, "max_tokens": 6}
    answers = {rt: c.post(path, json=body).json()["results"] for rt, c in clients.items()}

    assert answers["onnx"] == answers["torch"]
    backend = load_backend(Framework.PYTORCH, onnx_store / model, Settings())
    lengths = sorted(len(ids) for ids in backend.encode(SPREAD, 6))
    assert len(prefill_groups(lengths)) > 1  # the batch really was split


@pytest.mark.parametrize("model", ["gpt2-test", "llama-test"])
def test_rows_joining_a_running_batch_get_their_own_tokens(onnx_store: Path, model: str) -> None:
    settings = Settings(model_store=str(onnx_store))
    backend = load_backend(Framework.PYTORCH, onnx_store / model, settings)
    assert isinstance(backend, StepBackend)
    inner = backend.engine._runner
    assert isinstance(inner, OnnxRunner)
    torch_backend = load_backend(
        Framework.PYTORCH, onnx_store / model, settings.model_copy(update={"cpu_runtime": "torch"})
    )
    assert isinstance(torch_backend, StepBackend)
    torch_inner = torch_backend.engine._runner
    assert isinstance(torch_inner, TorchRunner)

    def fresh(runner_class: type[OnnxRunner]) -> OnnxRunner:
        return runner_class(inner._session, inner._metadata, inner._pad_id, inner._tables)

    joined = join_mid_decode(backend, fresh(OnnxRunner))
    reference = join_mid_decode(
        torch_backend, TorchRunner(torch_inner._decoder, torch_inner._pad_id)
    )
    broken = join_mid_decode(backend, fresh(ShiftedJoinOnnxRunner))

    assert joined == reference
    assert broken[0] == joined[0] and broken[1:] != joined[1:]  # live check


class ShiftedJoinOnnxRunner(OnnxRunner):
    """A broken runner for the live check: rows joining running rows decode one position off."""

    def add_rows(self, prompts: list[list[int]], width: int, all_logits: bool) -> Any:
        joining = len(self._lengths) > 0
        logits = super().add_rows(prompts, width, all_logits)
        if joining:
            self._lengths[-len(prompts) :] += 1
        return logits


@pytest.mark.parametrize("model", ["gpt2-test", "llama-int8"])
def test_a_prompt_scored_where_another_row_was_gets_its_own_logits(
    onnx_store: Path, model: str
) -> None:
    # Row 1 first holds a plain request (its last position's logits), then, once that has
    # left, a scored prompt (every position's logits, another shape) while row 0 decodes on:
    # the call must neither fail (and with it row 0's request) nor give other logits than the
    # prompt scored alone, and row 0 must go on with its own tokens.
    backend = load_backend(Framework.PYTORCH, onnx_store / model, Settings())
    assert isinstance(backend, StepBackend)
    inner = backend.engine._runner
    assert isinstance(inner, OnnxRunner)

    def fresh() -> OnnxRunner:
        return OnnxRunner(inner._session, inner._metadata, inner._pad_id, inner._tables)

    long, short, scored, other = backend.encode([*MIXED, "Numbers: 1, 2, 4"], 16)
    alone = fresh().add_rows([scored], len(scored), all_logits=True)[0]
    decoding_alone = decode(fresh(), long, steps=6)
    runner = fresh()
    (logits,) = runner.add_rows([long], len(long) + 16, all_logits=False)
    tokens = [int(np.argmax(logits))]
    runner.add_rows([short], len(short) + 2, all_logits=False)
    tokens.append(int(runner.step([tokens[-1], short[-1]])[0].argmax()))
    runner.truncate(1)  # the plain request left row 1

    (beside,) = runner.add_rows([scored], len(scored), all_logits=True)
    for _ in range(4):
        tokens.append(int(runner.step([tokens[-1], scored[-1]])[0].argmax()))

    assert np.array_equal(beside, alone)
    assert tokens[:6] == decoding_alone
    other_alone = fresh().add_rows([other], len(other), all_logits=True)[0]
    assert not np.array_equal(other_alone, alone)  # live check: a prompt's logits are its own


def decode(runner: OnnxRunner, prompt: list[int], steps: int) -> list[int]:
    (logits,) = runner.add_rows([prompt], len(prompt) + steps, all_logits=False)
    tokens = [int(np.argmax(logits))]
    for _ in range(steps - 1):
        tokens.append(int(runner.step([tokens[-1]])[0].argmax()))
    return tokens


@pytest.mark.parametrize("model", ["gpt2-test", "llama-test"])
def test_decoding_writes_the_cache_in_place(onnx_store: Path, model: str) -> None:
    backend = load_backend(Framework.PYTORCH, onnx_store / model, Settings())
    assert isinstance(backend, StepBackend)
    inner = backend.engine._runner
    runner = OnnxRunner(inner._session, inner._metadata, inner._pad_id, inner._tables)
    new_tokens = 24  # past the 16 columns a cache would start with if it grew as it went
    prompt = backend.encode(["The quick brown fox"], new_tokens)[0]
    runner.add_rows([prompt], len(prompt) + new_tokens, all_logits=False)
    buffers = list(runner._buffers)
    column = len(prompt)  # where the next token's keys go
    before = [b[0, :, column].copy() for b in buffers]

    logits = runner.step([prompt[-1]])

    assert all(a is b for a, b in zip(runner._buffers, buffers, strict=True))  # no new cache
    written = [
        not np.array_equal(b[0, :, column], old) for b, old in zip(buffers, before, strict=True)
    ]
    assert all(written)  # every layer's keys and values landed in the runner's own memory
    untouched = [not b[0, :, column + 1].any() for b in buffers]
    assert all(untouched)  # live check: the columns after it did not change

    for _ in range(new_tokens - 1):  # the rest of the row: the cache was made whole at once
        next_logits = runner.step([int(logits[0].argmax())])
        assert all(a is b for a, b in zip(runner._buffers, buffers, strict=True))
        # The logits land in the runner's own memory each step, not in a new array.
        assert np.shares_memory(next_logits, logits)
        logits = next_logits


def test_prompt_scoring_matches_pytorch(clients: dict[str, TestClient]) -> None:
    body = {
        "model": "llama-test",
        "prompt": "The farmer watches from the porch while the fox runs.",
        "max_tokens": 0,
        "echo": True,
        "logprobs": 1,
    }
    scored = {rt: c.post("/v1/completions", json=body).json() for rt, c in clients.items()}

    values = {rt: s["choices"][0]["logprobs"]["token_logprobs"][1:] for rt, s in scored.items()}
    assert np.allclose(values["onnx"], values["torch"], atol=1e-4)


def test_int8_prompts_and_steps_run_in_int8_close_to_float32(
    clients: dict[str, TestClient],
) -> None:
    body = {
        "prompt": "The farmer watches from the porch while the fox runs.",
        "max_tokens": 4,
        "echo": True,
        "logprobs": 1,
    }
    answers = {
        model: clients["onnx"].post("/v1/completions", json={**body, "model": model}).json()
        for model in ("gpt2-test", "gpt2-int8")  # the same weights: float32 and int8 exports
    }
    prompt_tokens = answers["gpt2-test"]["usage"]["prompt_tokens"]
    values = {
        m: np.array(a["choices"][0]["logprobs"]["token_logprobs"][1:]) for m, a in answers.items()
    }
    prompt = {m: v[: prompt_tokens - 1] for m, v in values.items()}

    # Prompt and generated tokens went through 8-bit graphs: near float32's scores, not equal.
    assert np.allclose(prompt["gpt2-int8"], prompt["gpt2-test"], rtol=0.02)
    assert not np.allclose(prompt["gpt2-int8"], prompt["gpt2-test"], rtol=0, atol=1e-6)
    assert not np.allclose(values["gpt2-int8"], values["gpt2-test"], rtol=0, atol=1e-6)


def test_int8_serves_and_says_so(clients: dict[str, TestClient]) -> None:
    response = clients["onnx"].post(
        "/gpt2_model", json={"model_name": "gpt2-int8", "prompts": PROMPTS, "max_tokens": 8}
    )
    engines = clients["onnx"].get("/health").json()["engines"]

    assert response.status_code == 200, response.text
    assert all(r["generated_tokens"] == 8 for r in response.json()["results"])
    assert engines["gpt2-int8:pt"]["runtime"] == INT8_RUNTIME


def test_onnx_required_but_missing_is_a_clear_422(onnx_store: Path, settings: Settings) -> None:
    with client_for(onnx_store, settings, "onnx") as client:
        response = client.post(
            "/llama_model", json={"model_name": "llama-chat-test", "prompts": ["Hi"]}
        )

    assert response.status_code == 422
    assert response.json()["error"]["type"] == "framework_unavailable"
    assert "textgen export-onnx" in response.json()["error"]["message"]


def test_an_older_two_graph_export_serves_from_its_per_token_graph(
    onnx_store: Path, tmp_path: Path
) -> None:
    model = as_format_3(shutil.copytree(onnx_store / "gpt2-int8", tmp_path / "gpt2-int8"))
    export = model / "onnx"
    # The earlier int8 layout: the per-token graph as prefill.onnx beside a decoding graph.
    (export / "model.onnx").rename(export / "prefill.onnx")
    (export / "model.onnx").write_bytes(b"a decoding graph this version does not load")
    metadata = json.loads((export / "textgen.json").read_text())
    (export / "textgen.json").write_text(json.dumps({**metadata, "prefill_model": "prefill.onnx"}))

    runtimes, found = greedy_tokens_of(model, onnx_store / "gpt2-int8")

    assert runtimes[0] == INT8_RUNTIME
    assert found[0] == found[1] and len(found[0]) == 6


def greedy_tokens_of(*models: Path) -> tuple[list[str], list[list[int]]]:
    """Each model's engine runtime and its six greedy tokens after "Hello there"."""
    backends = [load_backend(Framework.PYTORCH, model, Settings()) for model in models]
    try:
        ids = backends[0].encode(["Hello there"], 6)
        found = [
            b.engine.submit(Job(["Hello there"], ids, 6)).result(60)[0].token_ids for b in backends
        ]
    finally:
        for backend in backends:
            backend.engine.close()
    return [b.engine.runtime for b in backends], found


def test_an_export_of_format_4_serves_as_it_is_and_is_remade_when_ensured(
    onnx_store: Path, tmp_path: Path
) -> None:
    model = shutil.copytree(onnx_store / "llama-int8", tmp_path / "llama-int8")
    metadata_file = model / "onnx" / "textgen.json"
    metadata = json.loads(metadata_file.read_text())
    assert list(metadata["float_channels"]) == ["lm_head"] and metadata["calibration_tokens"]
    metadata_file.write_text(json.dumps({**metadata, "format": 4}))

    _, found = greedy_tokens_of(model, onnx_store / "llama-int8")
    assert found[0] == found[1] and len(found[0]) == 6  # the same files: the same tokens

    assert not has_current_export(model)
    assert ensure_export(model) is not None
    assert json.loads(metadata_file.read_text())["format"] == ONNX_EXPORT_FORMAT
    assert ensure_export(model) is None  # current now


def test_the_export_is_published_with_the_model(onnx_store: Path) -> None:
    manifest = build_manifest(onnx_store / "gpt2-test")

    published = {
        "onnx/model.onnx",
        "onnx/model.onnx.data",
        "onnx/embedding.npy",
        "onnx/textgen.json",
        *(f"onnx/{name}" for name in PARTS_FILES),  # the tokenizer, in parts that load faster
    }
    assert published <= set(manifest.files)
    assert "onnx/embedding_scale.npy" not in manifest.files  # float32: the table is float32
    int8_files = set(build_manifest(onnx_store / "gpt2-int8").files)
    assert {*published, "onnx/embedding_scale.npy"} <= int8_files  # int8: rows and their scales
    metadata = json.loads((onnx_store / "gpt2-int8" / "onnx" / "textgen.json").read_text())
    assert (metadata["precision"], metadata["family"]) == ("int8", "gpt2")
    assert (metadata["format"], metadata["int8_weights"]) == (ONNX_EXPORT_FORMAT, "signed")
    assert "prefill_model" not in metadata  # one graph for prompts and steps
    tokenizer = (onnx_store / "gpt2-int8" / "tokenizer.json").read_bytes()
    assert metadata["tokenizer_parts_of"] == hashlib.sha256(tokenizer).hexdigest()
    assert not (onnx_store / "gpt2-int8" / "onnx" / "prefill.onnx").exists()


def test_the_export_serves_its_tokenizer_in_parts_only_beside_the_tokenizer_they_stand_for(
    onnx_store: Path, tmp_path: Path
) -> None:
    model = shutil.copytree(onnx_store / "gpt2-int8", tmp_path / "gpt2-int8")
    whole = Tokenizer.from_file(str(model / "tokenizer.json"))
    text = "The quick brown fox<|endoftext|> jumps"

    served = load_backend(Framework.PYTORCH, model, Settings())
    assert served.encode([text], 1) == [whole.encode(text).ids]
    served.engine.close()
    # The parts are what it reads: damaged, the load fails and names them.
    vocab = model / "onnx" / PARTS_VOCAB_FILE
    intact = vocab.read_bytes()
    vocab.write_text("{not json")
    with pytest.raises(ModelLoadFailed, match="its parts in onnx/"):
        load_backend(Framework.PYTORCH, model, Settings())
    # tokenizer.json written again since the export (the same tokenizer, other bytes): the
    # parts are passed by and tokenizer.json is read.
    (model / "tokenizer.json").write_text(whole.to_str(pretty=False))
    again = load_backend(Framework.PYTORCH, model, Settings())
    assert again.encode([text], 1) == [whole.encode(text).ids]
    again.engine.close()
    vocab.write_bytes(intact)


def operators(graph: Any) -> Counter[str]:
    """How many nodes of each operator a graph has (the optimizer may reorder them)."""
    return Counter(node.op_type for node in graph.graph.node)


@pytest.mark.parametrize("model", ["gpt2-int8", "llama-int8", "gpt2-test"])
def test_the_export_is_laid_out_for_a_fast_start(
    onnx_store: Path, tmp_path: Path, model: str
) -> None:
    import onnx
    from onnx import TensorProto, helper

    from textgen.convert.onnx_layout import (
        LARGE_INITIALIZER_BYTES,
        WEIGHTS_ALIGNMENT,
        optimize_graph,
    )

    path = shutil.copytree(onnx_store / model / "onnx", tmp_path / "export") / "model.onnx"
    graph = onnx.load(str(path), load_external_data=False)
    # Large initializers lie in the weights file at aligned offsets (memory-mapped at load).
    external = [t for t in graph.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    inline = [t for t in graph.graph.initializer if t.data_location != TensorProto.EXTERNAL]
    assert external  # the tiny models' largest; every weight of a real model
    assert all(len(t.raw_data) < LARGE_INITIALIZER_BYTES for t in inline)
    for tensor in external:
        entries = {e.key: e.value for e in tensor.external_data}
        assert entries["location"] == "model.onnx.data"
        assert int(entries["offset"]) % WEIGHTS_ALIGNMENT == 0
    # Optimized at export: ONNX Runtime's optimizer finds nothing more to do...
    optimize_graph(path, tmp_path / "again.onnx")
    again = onnx.load(str(tmp_path / "again.onnx"), load_external_data=False)
    assert operators(again) == operators(graph)
    # ...where it would change a graph it had not optimized (live check: an Identity added).
    first = graph.graph.node[0].output[0]
    for node in graph.graph.node[1:]:
        node.input[:] = [f"{first}.same" if name == first else name for name in node.input]
    graph.graph.node.insert(1, helper.make_node("Identity", [first], [f"{first}.same"]))
    onnx.save(graph, path.parent / "unoptimized.onnx")
    optimize_graph(path.parent / "unoptimized.onnx", tmp_path / "optimized.onnx")
    optimized = onnx.load(str(tmp_path / "optimized.onnx"), load_external_data=False)
    assert operators(optimized) != operators(graph)


def weight_zero_points(graph_path: Path) -> list[np.ndarray]:
    import onnx

    graph = onnx.load(str(graph_path)).graph
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    products = [n for n in graph.node if n.op_type == "MatMulInteger"]
    return [weights[n.input[3]] for n in products if n.input[3] in weights]


def test_int8_weights_are_quantized_symmetrically(onnx_store: Path, tmp_path: Path) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    export = onnx_store / "gpt2-int8" / "onnx"
    # ONNX Runtime's default for the same graph (gpt2-test's float32 export of the same
    # weights): each channel over its own min..max.
    default = tmp_path / "default.onnx"
    quantize_dynamic(
        onnx_store / "gpt2-test" / "onnx" / "model.onnx",
        default,
        weight_type=QuantType.QUInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        extra_options={"DefaultTensorType": TensorProto.FLOAT},  # the export's own operators
    )

    exported, defaults = weight_zero_points(export / "model.onnx"), weight_zero_points(default)
    assert len(exported) == len(defaults) >= 2 * 4 + 1  # 4 a layer, the logits
    # Stored signed: zero at 0 (at 128 in the quantizer's unsigned bytes).
    assert all(z.dtype == np.int8 and (z == 0).all() for z in exported)
    assert not all((z == 128).all() for z in defaults)  # the check tells the two apart


def test_the_graph_has_the_quantizers_8_bit_weights(onnx_store: Path, tmp_path: Path) -> None:
    import onnx

    # What ONNX Runtime's quantizer writes for the same weights (gpt2-test's float32 export).
    quantized = quantize_int8(
        onnx_store / "gpt2-test" / "onnx" / "model.onnx", tmp_path / "quantized.onnx"
    )
    expected = int8_weights(onnx.load(str(quantized)))
    graph = onnx.load(str(onnx_store / "gpt2-int8" / "onnx" / "model.onnx")).graph
    arrays = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    products = [n for n in graph.node if n.op_type == "MatMulInteger"]
    assert not [n for n in graph.node if n.op_type == "DynamicQuantizeMatMul"]
    assert len(products) == len(expected) >= 2 * 4 + 1  # 4 a layer, the logits
    for name, weight in expected.items():  # stored signed: the same numbers, top bit flipped
        assert np.array_equal(arrays[f"{name}.q8"], weight.signed().values)
        assert np.array_equal(arrays[f"{name}.q8"].view(np.uint8) ^ 0x80, weight.values)
        assert np.array_equal(arrays[f"{name}.zero_point"], weight.signed().zero_point)
        assert np.array_equal(arrays[f"{name}.scale"], weight.scale)
    # Live check: the comparison tells two products of one shape apart (two layers' same one).
    first = next(iter(expected))
    shape = expected[first].values.shape
    second = next(n for n, w in expected.items() if n != first and w.values.shape == shape)
    assert not np.array_equal(arrays[f"{first}.q8"], expected[second].signed().values)


def test_serving_onnx_imports_neither_torch_nor_transformers(onnx_store: Path) -> None:
    report = generate_in_fresh_process(
        onnx_store / "gpt2-test", "pt", ("torch", "transformers", "tensorflow")
    )

    assert report == {"tokens": 4, "loaded": [], "runtime": "onnxruntime-float32"}


def test_export_refuses_a_family_it_cannot_export(store_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(store_dir / "bert-test", tmp_path / "bert-test")
    result = subprocess.run(
        [console_script("textgen"), "export-onnx", str(tmp_path / "bert-test")],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 1
    assert "gpt2 or llama only" in result.stderr


@pytest.mark.parametrize(
    ("damage", "refused"),
    [
        ("old_format", "export format 2"),
        ("embedding_dtype", "int8 table"),
        ("embedding_missing", "embedding.npy"),
        ("embedding_rows", "rows for"),
        ("scales_missing", "embedding_scale.npy"),
        ("scales_shape", "one scale per row"),
        ("scales_named_elsewhere", "unexpected embedding scale file"),
        ("graph_truncated", "cannot be loaded"),
        ("weights_truncated", "cannot be loaded"),
        ("weights_elsewhere", "cannot be loaded"),
        (None, None),  # live check: the same copy, undamaged, loads
    ],
)
def test_an_export_it_cannot_read_is_a_clear_load_error(
    onnx_store: Path, tmp_path: Path, damage: str | None, refused: str | None
) -> None:
    model = shutil.copytree(onnx_store / "gpt2-int8", tmp_path / "gpt2-int8")
    export = model / "onnx"
    if damage == "old_format":
        metadata = json.loads((export / "textgen.json").read_text())
        (export / "textgen.json").write_text(json.dumps({**metadata, "format": 2}))
    elif damage == "embedding_dtype":
        np.save(export / "embedding.npy", np.load(export / "embedding.npy").astype(np.float64))
    elif damage == "embedding_rows":
        np.save(export / "embedding.npy", np.load(export / "embedding.npy")[:-1])
    elif damage == "embedding_missing":
        (export / "embedding.npy").unlink()
    elif damage == "scales_missing":
        (export / "embedding_scale.npy").unlink()
    elif damage == "scales_shape":
        scales = np.load(export / "embedding_scale.npy")
        np.save(export / "embedding_scale.npy", np.repeat(scales, 2, axis=1))
    elif damage == "scales_named_elsewhere":
        metadata = json.loads((export / "textgen.json").read_text())
        (export / "textgen.json").write_text(
            json.dumps({**metadata, "embedding_scale": "../embedding_scale.npy"})
        )
    elif damage == "graph_truncated":  # signed or not, on any CPU
        graph = (export / "model.onnx").read_bytes()
        (export / "model.onnx").write_bytes(graph[: len(graph) // 2])
    elif damage == "weights_elsewhere":  # a graph pointing outside its folder: never read
        import onnx

        shutil.copy(export / "model.onnx.data", model / "model.onnx.data")
        graph = onnx.load(str(export / "model.onnx"), load_external_data=False)
        for tensor in graph.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = "../model.onnx.data"
        onnx.save(graph, export / "model.onnx")
    elif damage == "weights_truncated":  # mapped as they are, or flipped in memory
        weights = (export / "model.onnx.data").read_bytes()
        (export / "model.onnx.data").write_bytes(weights[: len(weights) // 2])

    if refused is None:
        backend = load_backend(Framework.PYTORCH, model, Settings())
        assert backend.engine.runtime == INT8_RUNTIME
        backend.engine.close()
        return
    with pytest.raises(ModelLoadFailed, match=refused) as raised:
        load_backend(Framework.PYTORCH, model, Settings())
    assert "textgen export-onnx" in str(raised.value)


def test_a_broken_tokenizer_is_a_clear_load_error(onnx_store: Path, tmp_path: Path) -> None:
    model = shutil.copytree(onnx_store / "gpt2-int8", tmp_path / "gpt2-int8")
    load_backend(Framework.PYTORCH, model, Settings()).engine.close()  # live check: it loads
    (model / "tokenizer.json").write_text("{not json")

    with pytest.raises(ModelLoadFailed, match=r"no usable tokenizer\.json"):
        load_backend(Framework.PYTORCH, model, Settings())


@pytest.mark.parametrize("weights", ["signed", "unsigned"])  # mapped as stored, or flipped
def test_a_truncated_weights_file_is_a_clear_load_error_either_way(
    onnx_store: Path, tmp_path: Path, weights: Int8Weights
) -> None:
    model = shutil.copytree(onnx_store / "gpt2-int8", tmp_path / "gpt2-int8")
    settings = Settings(onnx_int8_weights=weights)
    load_backend(Framework.PYTORCH, model, settings).engine.close()  # live check: it loads
    data = model / "onnx" / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:-1])

    with pytest.raises(ModelLoadFailed, match="cannot be loaded"):
        load_backend(Framework.PYTORCH, model, settings)
