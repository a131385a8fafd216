"""Installed size of the project, with and without extras, and the Lambda handler's import time.

Each variant is installed the way the images install it, in a fresh virtual environment: torch
first, then the runtime dependencies with the variant's extras, then the project (not editable):
where the checkout has container/install.sh, by the Lambda stage's own RUN commands that run it,
in the Dockerfile's order with its COPYs into /src (a copy under the scratch folder stands for
/src). Its size is that of its site-packages (bytecode included), with its largest folders. The
import time is that of `handlers.lambda_function` in a fresh process (what a Lambda cold start pays
before the first request), median of several runs. Point --source at a checkout of an older commit
(`git worktree add`) to measure "before". A variant is "base", an extras list such as "tf", or
"no-torch": the base install as the Lambda image's WITH_TORCH=false makes it. Reproduce with:

    python bench/install_footprint.py [--source DIR --label NAME] [--variants base,no-torch,tf]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks, as bench.*
from bench.cpu_decoding import cpu_description
from bench.report import report
from tests.support.dockerfile import run_lambda_install_steps

REPO_ROOT = Path(__file__).resolve().parents[1]
TORCH_VERSION = "2.13.0"
IMPORT_PROBE = (
    "import time; started = time.perf_counter(); import handlers.lambda_function; "
    "print(time.perf_counter() - started)"
)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def largest_folders(site: Path, count: int = 15) -> dict[str, int]:
    """site-packages' largest entries (a package's folder, its .libs folder, a module), in bytes."""
    sizes = {
        entry.name: folder_bytes(entry) if entry.is_dir() else entry.stat().st_size
        for entry in site.iterdir()
    }
    return dict(sorted(sizes.items(), key=lambda item: -item[1])[:count])


NO_TORCH = "no-torch"


def install(
    source: Path, extras: str, target: Path, with_torch: bool, base_python: str = sys.executable
) -> Path:
    """A fresh virtual environment at `target` (from `base_python`), installed as the images
    install the project; its interpreter."""
    subprocess.run([base_python, "-m", "venv", str(target)], check=True)
    python = target / "bin" / "python"
    script = source / "container" / "install.sh"
    if not script.is_file():  # commits from before the shared install script
        spec = f"{source}[{extras}]" if extras else str(source)
        pip = [str(python), "-m", "pip", "install", "-q", "--no-cache-dir"]
        subprocess.run([*pip, f"torch=={TORCH_VERSION}", spec], check=True)
        return python
    copy = target.parent / "src"  # /src in the image; the build removes it, as the image's does
    env = {
        **os.environ,
        "PATH": f"{target / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "SRC": str(copy),
        "TORCH_VERSION": TORCH_VERSION,
        "EXTRAS": extras,
        "WITH_TORCH": "true" if with_torch else "false",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_QUIET": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    run_lambda_install_steps(source, copy, env)
    return python


def import_seconds(python: Path, runs: int, store: Path) -> list[float]:
    env = {**os.environ, "MODEL_STORE": str(store), "PYTHONDONTWRITEBYTECODE": "1"}
    times = []
    with tempfile.TemporaryDirectory() as cwd:  # never import the checkout's own sources
        for _ in range(runs):
            done = subprocess.run(
                [str(python), "-c", IMPORT_PROBE],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            times.append(float(done.stdout.strip().splitlines()[-1]))
    return times


def measure(source: Path, variant: str, runs: int) -> dict[str, object]:
    extras = "" if variant in ("base", NO_TORCH) else variant
    with tempfile.TemporaryDirectory() as scratch:
        python = install(source, extras, Path(scratch) / "venv", variant != NO_TORCH)
        site = next((Path(scratch) / "venv" / "lib").glob("python*/site-packages"))
        store = Path(scratch) / "store"
        store.mkdir()
        times = import_seconds(python, runs, store)
        return {
            "site_packages_bytes": folder_bytes(site),
            "bytecode_bytes": sum(f.stat().st_size for f in site.rglob("*.pyc")),
            "tensorflow_bytes": folder_bytes(site / "tensorflow"),
            "torch_bytes": folder_bytes(site / "torch"),
            "largest_bytes": largest_folders(site),
            "handler_import_seconds": times,
            "handler_import_median_s": statistics.median(times),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=REPO_ROOT, help="project checkout")
    parser.add_argument("--label", default="this checkout", help="what --source is, for the report")
    parser.add_argument(
        "--variants", default="base,no-torch,tf", help="'base', 'no-torch' or an extras list"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    figures = {}
    for variant in args.variants.split(","):
        figures[variant] = measure(args.source.resolve(), variant, args.runs)
        print(variant, json.dumps(figures[variant]), file=sys.stderr)
    summary = {
        "source": args.label,
        "python": sys.version.split()[0],
        "cpu": cpu_description(),  # the handler's import times depend on it, the sizes do not
        "variants": figures,
    }
    report(summary, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
