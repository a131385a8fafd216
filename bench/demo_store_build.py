"""The demo store's first build (what the quick start's first `textgen serve` waits for): this
checkout against an older one, rounds interleaved, each build a fresh process into an empty
folder, SmolLM2's wheel already downloaded.

Reports each checkout's median seconds and peak resident memory, the ratios of this checkout to
the older one, and whether the two built the same files byte for byte. Reproduce with:

    git worktree add /tmp/before <commit>
    python bench/demo_store_build.py --before /tmp/before [--rounds 3] [--output ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the benchmarks beside this one, as bench.*

from bench.arguments import add_storage_options  # noqa: E402
from bench.cpu_decoding import cpu_description  # noqa: E402
from bench.report import report  # noqa: E402

BUILD = (
    "import json, resource, sys\n"
    "from pathlib import Path\n"
    "from textgen.demo.store import build_demo_store\n"
    "store = build_demo_store(Path(sys.argv[1]), Path(sys.argv[2]))\n"
    "assert not store.missing, store.missing\n"
    "print(json.dumps({'peak_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))\n"
)


def build(checkout: Path, root: Path, downloads: Path) -> dict[str, float]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{checkout}{os.pathsep}{checkout / 'layers'}",
        "EXPORT_CACHE_DIR": "",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(root), str(downloads)],
        cwd=checkout,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    peak = json.loads(done.stdout.splitlines()[-1])["peak_kib"]
    return {"seconds": seconds, "peak_gb": peak * 1024 / 1e9}


def digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="an older checkout")
    parser.add_argument("--rounds", type=int, default=3)
    add_storage_options(parser)
    args = parser.parse_args()

    from textgen.demo.public_data import smollm2_gguf

    smollm2_gguf(args.cache)  # downloaded once, before any round
    checkouts = {"this": REPO_ROOT, "before": args.before.resolve()}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
    files: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(args.rounds):
            for name, checkout in checkouts.items():
                root = Path(scratch) / f"{name}-{round_number}"
                runs[name].append(build(checkout, root, args.cache))
                files[name] = digests(root)

    medians: dict[str, Any] = {
        name: {
            "seconds": statistics.median(run["seconds"] for run in done),
            "peak_gb": statistics.median(run["peak_gb"] for run in done),
            "runs": done,
        }
        for name, done in runs.items()
    }
    figures = {
        "cpu": cpu_description(),
        "threads": os.cpu_count(),
        "rounds": args.rounds,
        "built": "the demo store: gpt2-tiny, llama-tiny, smollm2-135m, each with its int8 export",
        "checkouts": medians,
        "this_over_before": {
            part: medians["this"][part] / medians["before"][part] for part in ("seconds", "peak_gb")
        },
        "same_files": files["this"] == files["before"],
        "files": len(files["this"]),
    }
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
