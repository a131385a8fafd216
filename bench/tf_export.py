"""`textgen export-tf` on SmolLM2-135M: how long the export takes, and how long serving takes to
load the SavedModel it writes, this checkout against an older one, rounds interleaved.

Each round copies the model folder (SmolLM2 imported from its GGUF in bfloat16, as the demo
store keeps it), runs `textgen export-tf` on it from each checkout in a fresh process, then loads
the SavedModel in another fresh process (`tf.saved_model.load`, TensorFlow's import not counted).
Reports the medians, the size of each saved_model.pb, and the ratios of this checkout to the
older one. Reproduce with:

    git worktree add /tmp/before <commit>
    python bench/tf_export.py --before /tmp/before [--rounds 3] [--work DIR] [--output ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
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
from textgen.model_files import TF_EXPORT_DIR  # noqa: E402

LOAD = (
    "import sys, time\n"
    "import tensorflow as tf\n"
    "started = time.perf_counter()\n"
    "tf.saved_model.load(sys.argv[1])\n"
    "print(time.perf_counter() - started)\n"
)


def export_seconds(checkout: Path, model: Path, threads: int) -> float:
    env = {
        **os.environ,
        "PYTHONPATH": f"{checkout}{os.pathsep}{checkout / 'layers'}",
        "EXPORT_CACHE_DIR": "",  # every round exports
        "OMP_NUM_THREADS": str(threads),
    }
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "handlers.cli", "export-tf", str(model)],
        cwd=checkout,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def load_seconds(export: Path, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(export)], env=env, check=True, capture_output=True
    )
    return float(done.stdout.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="an older checkout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    add_storage_options(parser)
    args = parser.parse_args()

    from textgen.convert.gguf_import import import_gguf
    from textgen.demo.public_data import smollm2_gguf

    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        source = work / "smollm2-135m"
        if not (source / "config.json").is_file():
            import_gguf(smollm2_gguf(args.cache), source, dtype="bfloat16")
        checkouts = {"this": REPO_ROOT, "before": args.before.resolve()}
        times: dict[str, dict[str, list[float]]] = {
            name: {"export_s": [], "load_s": []} for name in checkouts
        }
        sizes: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, checkout in checkouts.items():
                model = Path(scratch) / f"round-{name}"
                shutil.rmtree(model, ignore_errors=True)
                shutil.copytree(source, model, ignore=shutil.ignore_patterns(TF_EXPORT_DIR))
                times[name]["export_s"].append(export_seconds(checkout, model, args.threads))
                export = model / TF_EXPORT_DIR
                times[name]["load_s"].append(load_seconds(export, args.threads))
                sizes[name] = (export / "saved_model.pb").stat().st_size
                shutil.rmtree(model)

    medians: dict[str, Any] = {
        name: {
            **{part: statistics.median(values) for part, values in parts.items()},
            "saved_model_pb_bytes": sizes[name],
            "runs": parts,
        }
        for name, parts in times.items()
    }
    figures = {
        "cpu": cpu_description(),
        "threads": args.threads,
        "rounds": args.rounds,
        "model": "SmolLM2-135M-Instruct (bfloat16 on disk)",
        "checkouts": medians,
        "this_over_before": {
            part: medians["this"][part] / medians["before"][part]
            for part in ("export_s", "load_s", "saved_model_pb_bytes")
        },
    }
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
