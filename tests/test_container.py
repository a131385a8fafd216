"""The Dockerfile: checked statically (no Docker engine here), and its serving commands run."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from container.requirements import requirements
from tests.dockerfile import parse
from tests.servers import REPO_ROOT, free_port, running_server

DOCKERFILE = parse(REPO_ROOT / "Dockerfile")
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
CACHE_VARIABLES = (
    "HF_HOME",
    "TORCHINDUCTOR_CACHE_DIR",
    "MPLCONFIGDIR",
    "KERAS_HOME",
    "XDG_CACHE_HOME",
)


def test_both_targets_exist() -> None:
    assert set(DOCKERFILE.stages) == {"lambda", "gpu"}


@pytest.mark.parametrize(
    ("target", "image", "pinned"),
    [
        ("lambda", "public.ecr.aws/lambda/python", r"3\.12(\.[\d.]+)?(@sha256:[0-9a-f]{64})?"),
        ("gpu", "nvidia/cuda", r"\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d\d\.\d\d"),
    ],
)
def test_base_images_are_pinned(target: str, image: str, pinned: str) -> None:
    base = DOCKERFILE.resolve(DOCKERFILE.stages[target].base)
    name, _, tag = base.partition(":")

    assert name == image
    assert re.fullmatch(pinned, tag), f"{base} is not pinned to a version"


def test_lambda_cmd_names_an_importable_handler() -> None:
    (handler,) = DOCKERFILE.stages["lambda"].last("CMD").exec_form() or []
    module_name, _, attribute = handler.rpartition(".")

    assert callable(getattr(importlib.import_module(module_name), attribute))


def test_every_copy_source_exists_and_reaches_the_build_context() -> None:
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    for stage in DOCKERFILE.stages.values():
        for copy in stage.all("COPY"):
            *sources, _ = copy.arguments.split()
            for source in sources:
                assert (REPO_ROOT / source).exists(), f"COPY {source}: no such path"
                assert f"!{source}" in ignored or f"!{source}/" in ignored, (
                    f"COPY {source}: .dockerignore leaves it out of the build context"
                )


def test_images_install_what_pyproject_declares() -> None:
    declared = PYPROJECT["project"]["dependencies"]
    torch_pin = DOCKERFILE.global_args["TORCH_VERSION"]
    test_torch = next(
        Requirement(r)
        for r in PYPROJECT["project"]["optional-dependencies"]["test"]
        if r.startswith("torch")
    )
    runtime_torch = next(Requirement(r) for r in declared if Requirement(r).name == "torch")

    assert requirements(str(REPO_ROOT / "pyproject.toml")) == [
        r for r in declared if Requirement(r).name != "torch"
    ]
    assert runtime_torch.specifier.contains(torch_pin)
    assert test_torch.specifier.contains(torch_pin), "images and tests run the same torch"
    for stage in DOCKERFILE.stages.values():
        runs = " ".join(i.arguments for i in stage.all("RUN"))
        assert '"torch==${TORCH_VERSION}"' in runs
        assert (
            "container/requirements.py" in runs and "pip install -r /tmp/requirements.txt" in runs
        )
        assert "pip install --no-deps /src" in runs


@pytest.mark.parametrize("target", ["lambda", "gpu"])
def test_caches_live_under_tmp_and_no_weights_are_baked_in_by_default(target: str) -> None:
    stage = DOCKERFILE.stages[target]
    env = stage.env()

    assert all(env[name].startswith("/tmp/") for name in CACHE_VARIABLES)
    assert env["MODEL_CACHE_DIR"].startswith("/tmp/")
    assert "ARG BAKE_DEMO_MODELS=false" in [f"ARG {i.arguments}" for i in stage.all("ARG")]


def test_layers_go_from_dependencies_to_code() -> None:
    for stage in DOCKERFILE.stages.values():
        order = [i.arguments for i in stage.instructions if i.keyword in {"RUN", "COPY"}]
        first_code = next(i for i, a in enumerate(order) if a.startswith("handlers"))
        last_dependency = max(i for i, a in enumerate(order) if "requirements.txt" in a)
        assert last_dependency < first_code


@pytest.mark.slow
def test_gpu_target_serving_command_and_health_check(store_dir: Path) -> None:
    stage = DOCKERFILE.stages["gpu"]
    command = stage.last("CMD").exec_form()
    health_check = stage.last("HEALTHCHECK").exec_form()
    assert command and health_check
    port = free_port()
    env = {"PORT": str(port), "MODEL_STORE": str(store_dir)}
    python_dir = str(Path(sys.executable).parent)
    env["PATH"] = (
        f"{python_dir}{os.pathsep}{os.environ['PATH']}"  # `uvicorn`, `python` as in the image
    )

    with running_server(command, port, env) as url:
        served = httpx.post(
            f"{url}/gpt2_model",
            json={"model_name": "gpt2-test", "prompts": ["Hi"], "max_tokens": 2},
            timeout=60,
        )
        healthy = subprocess.run(health_check, env={**os.environ, **env}, check=False)

    assert served.status_code == 200, served.text
    assert healthy.returncode == 0
    assert subprocess.run(health_check, env={**os.environ, **env}, check=False).returncode == 1
