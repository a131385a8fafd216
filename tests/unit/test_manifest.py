from __future__ import annotations

import json
from pathlib import Path

import pytest

from textgen.errors import ArtifactCorrupt
from textgen.manifest import build_manifest, parse_manifest

SHA = "a" * 64


def test_build_then_parse_round_trips(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    (tmp_path / "tf").mkdir()
    (tmp_path / "tf" / "saved_model.pb").write_bytes(b"x" * 10)

    manifest = build_manifest(tmp_path)
    parsed = parse_manifest(manifest.to_json().encode(), "m")

    assert parsed.files == manifest.files
    assert set(parsed.files) == {"config.json", "tf/saved_model.pb"}
    assert parsed.extra["family"] == "gpt2"
    assert parsed.extra["frameworks"] == ["tf"]
    assert parsed.digest == manifest.digest


def test_only_files_is_a_valid_manifest() -> None:
    manifest = parse_manifest(
        json.dumps({"files": {"a": {"size": 1, "sha256": SHA}}}).encode(), "m"
    )

    assert manifest.total_bytes == 1
    assert manifest.extra == {}


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"{}",
        b'{"files": {}}',
        json.dumps({"files": {"../escape": {"size": 1, "sha256": SHA}}}).encode(),
        json.dumps({"files": {"/etc/passwd": {"size": 1, "sha256": SHA}}}).encode(),
        json.dumps({"files": {"a/./b": {"size": 1, "sha256": SHA}}}).encode(),
        json.dumps({"files": {"a\\..\\b": {"size": 1, "sha256": SHA}}}).encode(),
        json.dumps({"files": {"manifest.json": {"size": 1, "sha256": SHA}}}).encode(),
        json.dumps({"files": {"a": {"size": -1, "sha256": SHA}}}).encode(),
        json.dumps({"files": {"a": {"size": 1, "sha256": "xyz"}}}).encode(),
        json.dumps({"files": {"a": {"size": 1}}}).encode(),
    ],
)
def test_invalid_manifests_are_refused(document: bytes) -> None:
    with pytest.raises(ArtifactCorrupt):
        parse_manifest(document, "m")
