"""The Lambda handler's import in a fresh process: this checkout against an older one, paired.

What a cold start pays before its first request, for a change that touches only the imports: each
round imports `handlers.lambda_function` once with this checkout and once with --source (an older
commit, `git worktree add`), in turn, the order swapped every round, so a drift in the machine's
speed hits both alike; the ratio is taken round by round. No model is preloaded (a local store).
Also lists the packages one side loads and the other does not. Both sides' modules are compiled to
bytecode first, as the images ship them (bench/bytecode.py: a checkout without it measured 1.16x
slower than the same code with it). Reproduce with:

    git worktree add /tmp/before <commit>
    python bench/handler_import.py --source /tmp/before [--rounds 21] [--output ...]

Both sides run on this environment's packages: install what the older checkout needs as well.
--source-python runs the --source side on another interpreter (with the same packages installed),
to compare Python versions on one checkout (`--source .`): the images run Python 3.12.
--as-image PYTHON runs both sides on a fresh install made from that interpreter as the Lambda
image makes it (WITH_TORCH=false: the install's packages, no development ones, no editable
install), each side still importing its own checkout's code:

    python bench/handler_import.py --source /tmp/before --as-image python3.12
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the benchmarks beside this one, as bench.*

from bench.bytecode import compile_checkout  # noqa: E402
from bench.cpu_decoding import cpu_description  # noqa: E402
from bench.install_footprint import NO_TORCH, install  # noqa: E402
from bench.report import report  # noqa: E402

PROBE = """
import json, sys, time
before = set(sys.modules)
started = time.perf_counter()
import handlers.lambda_function
seconds = time.perf_counter() - started
packages = {name.split(".")[0] for name in set(sys.modules) - before}
print(json.dumps({"seconds": seconds, "packages": sorted(packages)}))
"""


def import_once(source: Path, store: Path, python: str) -> dict[str, Any]:
    environment = {
        **os.environ,
        "PYTHONPATH": f"{source}{os.pathsep}{source / 'layers'}",  # its own, not the installed
        "MODEL_STORE": str(store),
    }
    environment.pop("PRELOAD_MODELS", None)
    done = subprocess.run(
        [python, "-c", PROBE],
        env=environment,
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def python_version(python: str) -> str:
    done = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, required=True, help="the older checkout")
    parser.add_argument(
        "--source-python", default=sys.executable, help="the interpreter of the --source side"
    )
    parser.add_argument(
        "--as-image",
        metavar="PYTHON",
        help=f"both sides on a fresh install from PYTHON as the Lambda image makes it ({NO_TORCH})",
    )
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    sides = {"this checkout": REPO_ROOT, "--source": args.source.resolve()}
    pythons = {"this checkout": sys.executable, "--source": args.source_python}
    with contextlib.ExitStack() as scratch:
        store = scratch.enter_context(tempfile.TemporaryDirectory())
        if args.as_image:
            image = Path(scratch.enter_context(tempfile.TemporaryDirectory())) / "venv"
            python = str(install(REPO_ROOT, "", image, with_torch=False, base_python=args.as_image))
            pythons = {side: python for side in sides}
        figures = measure(sides, pythons, Path(store), args.rounds)
    figures["installed_as_image"] = bool(args.as_image)
    report(figures, args.output)
    return 0


def measure(
    sides: dict[str, Path], pythons: dict[str, str], store: Path, rounds: int
) -> dict[str, Any]:
    for side, checkout in sides.items():
        compile_checkout(checkout, pythons[side])
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    packages: dict[str, set[str]] = {}
    for round_index in range(rounds + 1):  # the first round warms the page cache
        order = list(sides) if round_index % 2 else list(sides)[::-1]
        for side in order:
            found = import_once(sides[side], store, pythons[side])
            packages[side] = set(found["packages"])
            if round_index:
                seconds[side].append(found["seconds"])
    ours, older = seconds["this checkout"], seconds["--source"]
    ratios = [a / b for a, b in zip(ours, older, strict=True)]
    return {
        "cpu": cpu_description(),
        "rounds": rounds,
        "python": {side: python_version(python) for side, python in pythons.items()},
        "median_s": {side: statistics.median(values) for side, values in seconds.items()},
        "ratio_median": statistics.median(ratios),
        "ratio_quartiles": statistics.quantiles(ratios, n=4),
        "only_this_checkout_loads": sorted(packages["this checkout"] - packages["--source"]),
        "only_source_loads": sorted(packages["--source"] - packages["this checkout"]),
    }


if __name__ == "__main__":
    raise SystemExit(main())
