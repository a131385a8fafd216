"""What the engine spends between ONNX Runtime's calls: the service's fast CPU path generating
bench/cpu_decoding.py's workloads, its graph calls timed apart from the rest.

Per decoding step (the request's wall time over its steps): all of it, the part inside the
runner's graph calls (ONNX Runtime and binding their inputs; in checkouts before the logits stayed
in place, also copying them out), and the rest (scheduling, choosing tokens, detokenizing, events
to the streaming caller, growing the cache). Run it in this checkout and in an older one (a
worktree with this file copied in) to compare the engine's own costs; the graph's share moves
with the host's load, the rest much less.

Reproduce (WORK: the --work folder of a bench/cpu_decoding.py run, which holds the exports):

    python bench/step_overhead.py --work WORK --output bench/results/step_overhead-cpu-2core.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "layers")]

from bench.cpu_decoding import WORKLOADS, _service_runner  # noqa: E402
from bench.report import report  # noqa: E402

RUNS = 7


def measure(model_dir: Path, workload: str, threads: int) -> dict[str, Any]:
    from textgen.backends.onnx_runner import OnnxRunner

    inside = 0.0
    graph_call = OnnxRunner._run

    def timed(self: OnnxRunner, *args: Any, **kwargs: Any) -> Any:
        nonlocal inside
        started = time.perf_counter()
        try:
            return graph_call(self, *args, **kwargs)
        finally:
            inside += time.perf_counter() - started

    OnnxRunner._run = timed  # type: ignore[method-assign]
    try:
        prompts, new_tokens = WORKLOADS[workload]
        run = _service_runner("onnx", model_dir, prompts, new_tokens, threads)
        run()  # warm
        walls, outside = [], []
        for _ in range(RUNS):
            inside = 0.0
            started = time.perf_counter()
            run()
            wall = time.perf_counter() - started
            walls.append(wall * 1000 / new_tokens)
            outside.append((wall - inside) * 1000 / new_tokens)
    finally:
        OnnxRunner._run = graph_call  # type: ignore[method-assign]
    return {
        "step_ms": statistics.median(walls),
        "outside_graph_ms_per_step": statistics.median(outside),
        "outside_graph_ms_per_step_min": min(outside),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    figures: dict[str, Any] = {"threads": args.threads, "runs": RUNS}
    for model in ("gpt2-124m", "smollm2-135m"):
        for workload in WORKLOADS:
            key = f"{model}/{workload}"
            figures[key] = measure(args.work / model, workload, args.threads)
            print(key, figures[key], file=sys.stderr, flush=True)
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
