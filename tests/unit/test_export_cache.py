"""An export is reused only for identical inputs: the model's files, the converter, libraries."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from handlers.cli import main
from textgen.convert import tf_export
from textgen.convert.export_cache import cached_export, export_key
from textgen.model_files import TF_EXPORT_DIR

PACKAGES = ("numpy",)


def model(folder: Path, weights: bytes = b"weights") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def converter(folder: Path, code: str = "# version 1\n") -> Path:
    path = folder / "converter.py"
    path.write_text(code)
    return path


def test_the_key_follows_the_weights_and_the_converter_not_the_exports(tmp_path: Path) -> None:
    code = converter(tmp_path)
    first = export_key(model(tmp_path / "a"), [code], PACKAGES)
    same = model(tmp_path / "b")
    (same / TF_EXPORT_DIR).mkdir()
    (same / TF_EXPORT_DIR / "saved_model.pb").write_bytes(b"an earlier export")

    assert export_key(same, [code], PACKAGES) == first
    assert export_key(model(tmp_path / "c", b"weightz"), [code], PACKAGES) != first
    assert export_key(same, [converter(tmp_path, "# version 2\n")], PACKAGES) != first


def test_an_export_of_identical_inputs_is_copied_not_built(tmp_path: Path) -> None:
    builds: list[Path] = []

    def build_for(folder: Path) -> Callable[[], Path]:
        def build() -> Path:
            builds.append(folder)
            (folder / TF_EXPORT_DIR).mkdir()
            (folder / TF_EXPORT_DIR / "saved_model.pb").write_bytes(
                b"built from " + folder.name.encode()
            )
            return folder / TF_EXPORT_DIR

        return build

    cache = tmp_path / "cache"
    first, second, other = (model(tmp_path / name) for name in ("first", "second", "other"))

    _, reused_first = cached_export(cache, first, TF_EXPORT_DIR, "k1", build_for(first))
    target, reused = cached_export(cache, second, TF_EXPORT_DIR, "k1", build_for(second))
    _, reused_other = cached_export(cache, other, TF_EXPORT_DIR, "k2", build_for(other))

    assert (reused_first, reused, reused_other) == (False, True, False)
    assert builds == [first, other]  # the second was copied from the first's
    assert (target / "saved_model.pb").read_bytes() == b"built from first"
    assert not (target / ".complete").exists()
    # Without a cache folder, always built.
    plain = model(tmp_path / "plain")
    assert cached_export(None, plain, TF_EXPORT_DIR, "k1", build_for(plain))[1] is False
    assert len(builds) == 3


def test_the_command_reuses_a_kept_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model(tmp_path / "my-gpt2")
    cache = tmp_path / "exports"
    entry = cache / f"{TF_EXPORT_DIR}-{tf_export.export_key_of(folder)}"
    entry.mkdir(parents=True)
    (entry / "saved_model.pb").write_bytes(b"kept")
    (entry / ".complete").write_text("")
    monkeypatch.setenv("EXPORT_CACHE_DIR", str(cache))

    assert main(["export-tf", str(folder)]) == 0

    assert capsys.readouterr().out.startswith("reused the TensorFlow export to")
    assert (folder / TF_EXPORT_DIR / "saved_model.pb").read_bytes() == b"kept"
    # The same folder with other weights is not this entry's: it is built (and needs TensorFlow's
    # converter, which a config this small fails before importing anything heavy).
    shutil.rmtree(folder / TF_EXPORT_DIR)
    (folder / "model.safetensors").write_bytes(b"other weights")
    assert main(["export-tf", str(folder)]) != 0
    assert not (folder / TF_EXPORT_DIR).exists()


@pytest.fixture
def onnx_builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The model folders whose int8 export is built (not copied) from here on, in order."""
    from textgen.convert import onnx_export

    built: list[Path] = []
    real = onnx_export.export_onnx

    def counted(model_dir: Path) -> Path:
        built.append(model_dir)
        return real(model_dir)

    monkeypatch.setattr(onnx_export, "export_onnx", counted)
    return built


def test_an_onnx_export_of_identical_inputs_is_copied_not_built(
    store_dir: Path, tmp_path: Path, onnx_builds: list[Path]
) -> None:
    from textgen.convert import onnx_export
    from textgen.model_files import ONNX_EXPORT_DIR

    cache = tmp_path / "exports"
    first, second, other = (
        shutil.copytree(store_dir / "llama-test", tmp_path / name, ignore=ignore_exports)
        for name in ("first", "second", "other")
    )
    (other / "config.json").write_text((other / "config.json").read_text() + "\n")

    for folder in (first, second, other):
        assert onnx_export.ensure_export(folder, cache) == folder / ONNX_EXPORT_DIR

    assert onnx_builds == [first, other]  # the second was copied from the first's
    for name in ("model.onnx", "model.onnx.data", "textgen.json"):
        copied = (second / ONNX_EXPORT_DIR / name).read_bytes()
        assert copied == (first / ONNX_EXPORT_DIR / name).read_bytes()
    assert onnx_export.has_current_export(second)
    assert onnx_export.ensure_export(second, cache) is None  # current: nothing to do


def ignore_exports(folder: str, names: list[str]) -> list[str]:
    return [name for name in names if name in ("onnx", "tf")]


def test_the_demo_stores_tiny_models_reuse_kept_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, onnx_builds: list[Path]
) -> None:
    from textgen.demo import store
    from textgen.model_files import ONNX_EXPORT_DIR

    monkeypatch.setattr(store, "_fetch_smollm2", lambda *_: None)  # the tiny models only
    cache = tmp_path / "exports"
    first = store.build_demo_store(tmp_path / "first", tmp_path / "downloads", export_cache=cache)
    # The same models in another store (a store keeps its models and adds missing exports).
    for name in store.TINY_DEMO_MODELS:
        shutil.copytree(
            tmp_path / "first" / name, tmp_path / "second" / name, ignore=ignore_exports
        )
    second = store.build_demo_store(tmp_path / "second", tmp_path / "downloads", export_cache=cache)

    assert [p.name for p in first.exported] == [p.name for p in second.exported]
    assert [p.name for p in second.exported] == list(store.TINY_DEMO_MODELS)
    # none for the second
    assert onnx_builds == [tmp_path / "first" / name for name in store.TINY_DEMO_MODELS]
    for name in store.TINY_DEMO_MODELS:
        kept, copied = (tmp_path / root / name / ONNX_EXPORT_DIR for root in ("first", "second"))
        assert (copied / "model.onnx").read_bytes() == (kept / "model.onnx").read_bytes()
