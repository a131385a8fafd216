from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from handlers.cli import main
from tests.support.servers import console_script


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["serve"],
        ["demo-store"],
        ["models"],
        ["publish"],
        ["export-tf"],
        ["export-onnx"],
        ["warm-up"],
        ["import-gguf"],
    ],
)
def test_help_for_every_command(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*args, "--help"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: textgen")


@pytest.mark.slow
def test_the_installed_command_runs() -> None:
    result = subprocess.run(
        [console_script("textgen"), "--help"], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: textgen")


def test_models_lists_a_store(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", str(store_dir)]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert "gpt2-test\tgpt2\tpt" in lines
    assert "llama-test\tllama\tpt" in lines


def test_models_on_a_missing_store_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", str(tmp_path / "nowhere")]) == 1

    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["export-onnx", "{tmp}"], "{tmp} is not a model folder: it has no config.json"),
        (["export-tf", "{tmp}/nowhere"], "{tmp}/nowhere is not a model folder"),
        (["publish", "{tmp}", "s3://bucket/name"], "{tmp} is not a model folder"),
        (["run-batch", "-i", "{tmp}/none.jsonl", "-o", "{tmp}/o"], "none.jsonl: No such file"),
    ],
    ids=["export-onnx", "export-tf", "publish", "run-batch"],
)
def test_a_missing_folder_or_file_is_a_clear_error(
    args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line naming it, exit status 1: not a traceback, nor a progress bar first."""
    assert main([a.format(tmp=tmp_path) for a in args]) == 1

    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("textgen: error: "), err
    assert says.format(tmp=tmp_path) in err
    assert "Traceback" not in err and "uploading" not in err
