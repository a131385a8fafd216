"""Two exports of one model served by this checkout, side by side: what an export format change
costs or saves at serving time, with nothing else changed.

Each folder holds the model's files and an ONNX export (`onnx/`), for example one written by an
older checkout (its format must be one this checkout reads). Each round runs both, in turn (the
order swapped every round, so a drift in the machine's speed hits both alike), through
bench/cpu_decoding.py's child process and workloads (1 prompt x 128 tokens, 8 prompts x 64),
fresh processes; reported per folder: the export's bytes (what a cold start downloads of it),
tokens/s, peak resident memory and process start to first token (medians), and B over A.
Reproduce with:

    git worktree add /tmp/before <commit>
    cp -rL WORK/smollm2-135m /tmp/smollm2-before && rm -r /tmp/smollm2-before/onnx
    (cd /tmp/before && PYTHONPATH=.:layers python -m handlers.cli export-onnx /tmp/smollm2-before)
    python bench/export_pair.py /tmp/smollm2-before WORK/smollm2-135m [--rounds 5] [--output ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.cpu_decoding import cpu_description, run_child  # noqa: E402
from bench.report import report  # noqa: E402

WORKLOADS = ("1x128", "8x64")
FIGURES = ("tokens_per_second", "peak_rss_mb", "start_to_first_token_s")


def export_bytes(model_dir: Path) -> int:
    return sum(f.stat().st_size for f in (model_dir / "onnx").iterdir() if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", type=Path, help="a model folder with its export")
    parser.add_argument("b", type=Path, help="the same model with another export")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    sides = {"a": args.a, "b": args.b}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {side: {} for side in sides}
    for round_index in range(args.rounds):
        order = list(sides) if round_index % 2 == 0 else list(sides)[::-1]
        for workload in WORKLOADS:
            for side in order:
                run = run_child("onnx", sides[side], workload, args.threads)
                runs[side].setdefault(workload, []).append(run)
    figures: dict[str, Any] = {"cpu": cpu_description(), "threads": args.threads}
    figures["rounds"] = args.rounds
    for side, folder in sides.items():
        figures[side] = {"folder": folder.name, "export_bytes": export_bytes(folder)}
        for workload, found in runs[side].items():
            figures[side][workload] = {
                name: statistics.median(run[name] for run in found) for name in FIGURES
            }
    figures["b_over_a"] = {
        "export_bytes": figures["b"]["export_bytes"] / figures["a"]["export_bytes"]
    }
    for workload in WORKLOADS:
        figures["b_over_a"][workload] = {
            name: figures["b"][workload][name] / figures["a"][workload][name] for name in FIGURES
        }
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
