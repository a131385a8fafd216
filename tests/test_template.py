"""template.yaml: linted by cfn-lint and SAM CLI, and consistent with the app and the Dockerfile."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from handlers.factory import create_app
from tests.support.dockerfile import parse
from tests.support.servers import REPO_ROOT, console_script
from textgen.settings import Settings

TEMPLATE = REPO_ROOT / "template.yaml"


class _CloudFormationLoader(yaml.SafeLoader):  # type: ignore[misc]
    """Reads !Ref, !Sub, !If and friends as plain {"Fn": value} mappings."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


_CloudFormationLoader.add_multi_constructor("!", _tag)
DOC: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CloudFormationLoader)
FUNCTION = DOC["Resources"]["TextgenFunction"]


def sam_cli() -> str:
    """SAM CLI has its own virtual environment (.venv-sam); SAM_CLI or PATH may name another."""
    candidates = [
        os.environ.get("SAM_CLI"),
        str(REPO_ROOT / ".venv-sam" / "bin" / "sam"),
        shutil.which("sam"),
    ]
    found = next((c for c in candidates if c and Path(c).is_file()), None)
    assert found, "SAM CLI not found: install it as the README's test command does (.venv-sam)"
    return found


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.slow
def test_cfn_lint_finds_nothing() -> None:
    result = run([console_script("cfn-lint"), str(TEMPLATE)])

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_sam_validate_lint() -> None:
    result = run(
        [sam_cli(), "validate", "--lint", "--region", "us-east-1", "--template", str(TEMPLATE)]
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_function_is_a_container_image_built_from_the_lambda_target() -> None:
    metadata = FUNCTION["Metadata"]

    assert FUNCTION["Properties"]["PackageType"] == "Image"
    assert (REPO_ROOT / metadata["DockerContext"] / metadata["Dockerfile"]).is_file()
    assert metadata["DockerBuildTarget"] in parse(REPO_ROOT / "Dockerfile").stages
    assert metadata["DockerBuildTarget"] == "lambda"


def test_the_function_is_built_without_torch() -> None:
    # Models are published with their ONNX exports (`textgen publish`): the Lambda image serves
    # them without torch, 0.9 GB smaller (docs/lambda.md). The lambda stage takes the argument.
    lambda_stage = parse(REPO_ROOT / "Dockerfile").stages["lambda"]
    declared = {i.arguments.split("=")[0] for i in lambda_stage.all("ARG")}

    assert FUNCTION["Metadata"]["DockerBuildArgs"] == {"WITH_TORCH": "false"}
    assert set(FUNCTION["Metadata"]["DockerBuildArgs"]) <= declared


def test_api_routes_are_the_apps_routes() -> None:
    app = create_app(Settings())
    app_routes = {
        (method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item
    } | {("GET", app.docs_url), ("GET", app.openapi_url)}
    template_routes = {
        (event["Properties"]["Method"], event["Properties"]["Path"])
        for event in FUNCTION["Properties"]["Events"].values()
    }

    assert template_routes == app_routes


MODEL_OBJECTS = {"Sub": "arn:${AWS::Partition}:s3:::${ModelBucket}/${ModelPrefix}/*"}
BATCH_BUCKET = {"If": ["BatchBucketGiven", {"Ref": "BatchBucket"}, {"Ref": "ModelBucket"}]}
BATCH_OBJECTS = {
    "Sub": ["arn:${AWS::Partition}:s3:::${Bucket}/${BatchPrefix}/*", {"Bucket": BATCH_BUCKET}]
}


def statements_of(function: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (policy,) = function["Properties"]["Policies"]
    return {s["Sid"]: s for s in policy["Statement"]}


def test_the_function_reads_the_model_prefix_and_writes_only_the_batch_prefix() -> None:
    statements = statements_of(FUNCTION)

    assert set(statements) == {
        "ReadModels",
        "ListModels",
        "BatchObjects",
        "ListBatchObjects",
        "SendChunks",
    }
    assert statements["ReadModels"]["Action"] == "s3:GetObject"
    assert statements["ReadModels"]["Resource"] == MODEL_OBJECTS
    assert statements["ListModels"]["Action"] == "s3:ListBucket"
    assert statements["ListModels"]["Condition"] == {
        "StringLike": {"s3:prefix": [{"Sub": "${ModelPrefix}/*"}]}
    }
    assert statements["BatchObjects"]["Resource"] == BATCH_OBJECTS
    assert statements["ListBatchObjects"]["Condition"] == {
        "StringLike": {"s3:prefix": [{"Sub": "${BatchPrefix}/*"}]}
    }
    assert statements["SendChunks"] == {
        "Sid": "SendChunks",
        "Effect": "Allow",
        "Action": "sqs:SendMessage",
        "Resource": {"GetAtt": "BatchQueue.Arn"},
    }


def test_batch_workers_take_chunks_from_the_queue_as_the_batch_api_needs() -> None:
    worker = DOC["Resources"]["BatchWorkerFunction"]["Properties"]
    queue = DOC["Resources"]["BatchQueue"]["Properties"]
    (event,) = worker["Events"].values()
    statements = statements_of(DOC["Resources"]["BatchWorkerFunction"])
    module, _, name = worker["ImageConfig"]["Command"][0].rpartition(".")

    assert callable(getattr(importlib.import_module(module), name))
    assert event["Type"] == "SQS" and event["Properties"]["Queue"] == {"GetAtt": "BatchQueue.Arn"}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Properties"]["ScalingConfig"] == {
        "MaximumConcurrency": {"Ref": "BatchWorkerMaxConcurrency"}
    }
    # A chunk still running is never handed to a second worker: AWS asks for six times the
    # function's timeout.
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"GetAtt": "BatchDeadLetterQueue.Arn"},
        "maxReceiveCount": 3,
    }
    assert set(statements) == {"ReadModels", "ListModels", "BatchObjects"}
    assert statements["BatchObjects"]["Resource"] == BATCH_OBJECTS
    assert statements["BatchObjects"]["Action"] == ["s3:GetObject", "s3:PutObject"]
    for variable in ("BATCH_BUCKET", "BATCH_PREFIX", "BATCH_QUEUE_URL"):
        assert (
            worker["Environment"]["Variables"][variable]
            == (FUNCTION["Properties"]["Environment"]["Variables"][variable])
        )


def test_parameters_a_deployer_needs() -> None:
    assert {
        "ModelBucket",
        "ModelPrefix",
        "MemorySize",
        "EphemeralStorageSize",
        "FunctionTimeout",
        "PreloadModels",
        "ApiKeyRequired",
    } <= set(DOC["Parameters"])
    assert DOC["Outputs"]["ApiUrl"]["Value"]["Sub"].endswith("/Prod/")
