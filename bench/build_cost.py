"""What a build costs, this checkout against an older one, rounds interleaved, each build a fresh
process writing into an empty folder:

- `demo-store`: the demo store's first build (what the quick start's first `textgen serve` waits
  for), SmolLM2's wheel already downloaded;
- `export-onnx`: `textgen export-onnx` of SmolLM2 as the demo store keeps it (bfloat16 on disk),
  what `textgen publish` runs for a model without an export.

Reports each checkout's median seconds and peak resident memory, the ratios of this checkout to
the older one, and whether the two wrote the same files byte for byte. Reproduce with:

    git worktree add /tmp/before <commit>
    python bench/build_cost.py --before /tmp/before [--build export-onnx] [--rounds 3] [--output F]
"""

from __future__ import annotations

import argparse
import hashlib
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

PEAK = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
BUILDS = {
    "demo-store": (
        "import sys\n"
        "from pathlib import Path\n"
        "from textgen.demo.store import build_demo_store\n"
        "store = build_demo_store(Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "assert not store.missing, store.missing\n" + PEAK
    ),
    "export-onnx": (
        "import shutil, sys\n"
        "from pathlib import Path\n"
        "from textgen.convert.onnx_export import export_onnx\n"
        "model = Path(sys.argv[1]) / 'smollm2-135m'\n"
        "shutil.copytree(Path(sys.argv[3]), model, ignore=shutil.ignore_patterns('onnx', 'tf'))\n"
        "export_onnx(model)\n" + PEAK
    ),
}


def build(script: str, checkout: Path, root: Path, *arguments: Path) -> dict[str, float]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{checkout}{os.pathsep}{checkout / 'layers'}",
        "EXPORT_CACHE_DIR": "",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script, str(root), *map(str, arguments)],
        cwd=checkout,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    peak_kib = int(done.stdout.splitlines()[-1])
    return {"seconds": seconds, "peak_gb": peak_kib * 1024 / 1e9}


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
    parser.add_argument("--build", choices=sorted(BUILDS), default="demo-store")
    add_storage_options(parser)
    args = parser.parse_args()

    from textgen.convert.gguf_import import import_gguf
    from textgen.demo.public_data import smollm2_gguf

    gguf_file = smollm2_gguf(args.cache)  # downloaded once, before any round
    checkouts = {"this": REPO_ROOT, "before": args.before.resolve()}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
    files: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        smollm2 = (args.work or Path(scratch)) / "smollm2-135m"
        if args.build == "export-onnx" and not (smollm2 / "config.json").is_file():
            import_gguf(gguf_file, smollm2, dtype="bfloat16")
        for round_number in range(args.rounds):
            for name, checkout in checkouts.items():
                root = Path(scratch) / f"{name}-{round_number}"
                built = build(BUILDS[args.build], checkout, root, args.cache, smollm2)
                runs[name].append(built)
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
        "built": args.build,
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
