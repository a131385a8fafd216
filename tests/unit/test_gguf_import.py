"""`textgen import-gguf` refuses what it cannot convert, before converting anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import GGUFWriter

from handlers.cli import main
from textgen.convert.gguf_import import import_gguf
from textgen.errors import ArtifactCorrupt, UnsupportedModel


def write_gguf(path: Path, architecture: str) -> Path:
    """A small but valid GGUF file: one tensor, and the architecture's block count."""
    writer = GGUFWriter(str(path), architecture)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(8, 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_another_architecture_is_refused(tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "falcon.gguf", "falcon")

    with pytest.raises(
        UnsupportedModel, match="'falcon' model; this service serves llama and gpt2"
    ):
        import_gguf(model, tmp_path / "store" / "falcon")
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"not a gguf file at all" + data[22:], id="wrong-magic"),
        pytest.param(lambda data: data[: len(data) // 3], id="truncated"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_a_corrupt_file_is_refused(tmp_path: Path, damage: object) -> None:
    model = write_gguf(tmp_path / "m.gguf", "llama")
    assert callable(damage)
    model.write_bytes(damage(model.read_bytes()))

    with pytest.raises(ArtifactCorrupt, match="not a readable GGUF file"):
        import_gguf(model, tmp_path / "store" / "m")
    assert not (tmp_path / "store").exists()


def test_the_command_says_why_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"hello")
    falcon = write_gguf(tmp_path / "falcon.gguf", "falcon")
    store = str(tmp_path / "store")

    assert main(["import-gguf", str(garbage), "m", "--store", store]) == 1
    assert "garbage.gguf is not a readable GGUF file" in capsys.readouterr().err
    assert main(["import-gguf", str(falcon), "m", "--store", store]) == 1
    assert "'falcon' model" in capsys.readouterr().err
    assert main(["import-gguf", str(tmp_path / "missing.gguf"), "m", "--store", store]) == 1
    assert "missing.gguf is not a file" in capsys.readouterr().err
    assert main(["import-gguf", str(falcon), "../m", "--store", store]) == 1
    assert "invalid model name" in capsys.readouterr().err
    assert main(["import-gguf", str(falcon), "m", "--store", "s3://bucket/models"]) == 2
    assert "textgen publish" in capsys.readouterr().err


def test_an_import_parses_the_file_once_for_hugging_faces_three_readings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gguf
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from textgen.convert.gguf_import import _one_parse

    parsed: list[Path] = []

    class CountingReader(gguf.GGUFReader):
        def __init__(self, path: Path | str, *args: Any, **kwargs: Any) -> None:
            parsed.append(Path(path))
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    model, other = write_gguf(tmp_path / "m.gguf", "llama"), write_gguf(tmp_path / "o.gguf", "gpt2")
    load_gguf_checkpoint(str(model))
    assert parsed == [model]  # live check: each reading parses the file again

    with _one_parse(model) as reader:
        configs = [load_gguf_checkpoint(str(model))["config"] for _ in range(3)]
        load_gguf_checkpoint(str(other))  # another file is read as ever
    load_gguf_checkpoint(str(model))  # and, after the import, this one too

    assert parsed == [model, model, other, model]
    assert configs[0] == configs[2] and configs[0]["model_type"] == "llama"
    assert reader.fields["general.architecture"].contents() == "llama"
    assert gguf.GGUFReader is CountingReader
