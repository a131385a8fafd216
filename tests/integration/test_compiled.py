"""The compiled path (static KV cache, decode step compiled per batch bucket), on the CPU:
torch.compile runs here too. Its greedy tokens are the eager path's, rows joining and leaving
never recompile, and a saved compile cache spares a fresh process most of the compilation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.support.engine_checks import join_mid_decode
from tests.support.fresh_process import fresh_python
from textgen.backends import load_backend
from textgen.backends.compiled_runner import CompiledRunner
from textgen.backends.step_backend import StepBackend
from textgen.backends.torch_runner import TorchRunner
from textgen.engine import Job
from textgen.errors import InvalidRequest
from textgen.families import Framework
from textgen.settings import Settings

pytestmark = pytest.mark.slow

# One bucket of three rows: compiling on two CPU cores takes a while per bucket.
COMPILED: dict[str, Any] = {
    "cpu_runtime": "torch",
    "compile": "on",
    "compile_batch_buckets": [],
    "max_batch_size": 3,
}


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compile-cache")


@pytest.fixture(scope="module")
def backends(store_dir: Path, compile_cache: Path) -> dict[str, StepBackend]:
    settings = Settings(model_store=str(store_dir), compile_cache_dir=compile_cache, **COMPILED)
    found: dict[str, StepBackend] = {}
    for runtime, changes in (("compiled", {}), ("eager", {"compile": "off"})):
        backend = load_backend(
            Framework.PYTORCH, store_dir / "llama-test", settings.model_copy(update=changes)
        )
        assert isinstance(backend, StepBackend)
        found[runtime] = backend
    return found


def test_compiled_greedy_tokens_are_the_eager_ones_as_rows_join_and_leave(
    backends: dict[str, StepBackend],
) -> None:
    compiled = backends["compiled"].engine._runner
    eager = backends["eager"].engine._runner
    assert isinstance(compiled, CompiledRunner) and isinstance(eager, TorchRunner)
    assert backends["compiled"].engine.runtime == "torch-float32-compiled"

    with torch._dynamo.config.patch(error_on_recompile=True):  # any recompile fails the run
        joined = join_mid_decode(backends["compiled"], compiled)
        alone = [
            backends["compiled"].engine.submit(job).result(120)[0].token_ids
            for job in _jobs(backends["compiled"])
        ]
    reference = join_mid_decode(backends["eager"], TorchRunner(eager._decoder, eager._pad_id))

    assert joined == reference
    assert alone == [
        backends["eager"].engine.submit(job).result(120)[0].token_ids
        for job in _jobs(backends["eager"])
    ]
    # Live check: the compiled cache really is shared with prefill (a different prompt differs).
    assert alone[0] != alone[1]


def _jobs(backend: StepBackend) -> list[Job]:
    prompts = ["Hello there", "The quick brown fox jumps over the lazy dog"]
    return [Job([p], backend.encode([p], 12), 12) for p in prompts]


def test_a_request_wider_than_the_static_cache_is_refused(
    store_dir: Path, compile_cache: Path
) -> None:
    # A budget of 3 rows x 24 tokens: the compiled cache is 24 columns wide.
    tiny_budget = 3 * 24 * 2 * 2 * 2 * 16 * 4  # rows x tokens x layers x (k,v) x kv_heads x dim x 4
    settings = Settings(
        model_store=str(store_dir),
        compile_cache_dir=compile_cache,
        kv_cache_max_bytes=tiny_budget,
        **COMPILED,
    )
    backend = load_backend(Framework.PYTORCH, store_dir / "llama-test", settings)
    prompt = ["Hello there"]

    fits = backend.engine.submit(Job(prompt, backend.encode(prompt, 20), 20)).result(120)
    with pytest.raises(InvalidRequest, match="at most 24 tokens"):
        backend.engine.submit(Job(prompt, backend.encode(prompt, 40), 40))

    assert len(fits[0].token_ids) == 20


def test_a_fresh_process_with_the_saved_cache_compiles_from_it(
    backends: dict[str, StepBackend], store_dir: Path, compile_cache: Path, tmp_path: Path
) -> None:
    assert list(compile_cache.glob("llama-test-cpu-float32-rows3-width*.bin"))  # warm-ups wrote
    script = """
import json, sys
from pathlib import Path
from typing import Any
from torch._dynamo.utils import counters
from textgen.backends import load_backend
from textgen.families import Framework
from textgen.settings import Settings
settings = Settings(model_store=sys.argv[1], **json.loads(sys.argv[2]))
load_backend(Framework.PYTORCH, Path(sys.argv[1]) / "llama-test", settings)
print(json.dumps(dict(counters["inductor"])))
"""
    env = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "empty-inductor-cache")}
    arguments = json.dumps({**COMPILED, "compile_cache_dir": str(compile_cache)})
    counts = fresh_python(script, str(store_dir), arguments, env=env)
    # Its own inductor cache is empty: the hits come from the artifacts it loaded.
    assert counts.get("fxgraph_cache_hit", 0) >= 1
    assert counts.get("fxgraph_cache_miss", 0) == 0
