"""Where a decoding step's time goes on the fast CPU path: ONNX Runtime's own profiler over the
service generating bench/cpu_decoding.py's workloads, its node times summed by operator.

The service runs the model's int8 export as it serves it (its session options, its runner, its
engine), timed, then again with ONNX Runtime's profiling switched on; after a warm run and --runs
more, the profile's node events are summed by operator type, the weighted products split into the
layers' and the output projection's (the MatMulInteger whose output is vocabulary-wide), and the
graph's whole runs (model_run) set against the generation's wall time: what is left is the
engine's own work between calls. Per decoding step, in milliseconds, and as shares of the same
step measured first without the profiler. The profiler's bookkeeping costs every node run a few
microseconds, which a one-row step's ~2,000 node runs make several times the step itself: the
kernels that compute (the products, attention) are timed about right, the small nodes' times are
mostly the profiler's.
Reproduce (WORK: the --work folder of a bench/cpu_decoding.py run, which holds the exports):

    python bench/step_profile.py --work WORK [--output bench/results/....json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "layers")]

from bench.cpu_decoding import WORKLOADS, _service_runner, cpu_description  # noqa: E402
from bench.report import report  # noqa: E402

PRODUCT = "MatMulInteger"


def profiled(model_dir: Path, workload: str, threads: int, runs: int, folder: Path) -> Any:
    """The profile's events (after a warm run and `runs` more) and the generation's wall time."""
    import onnxruntime as ort

    from textgen.backends import onnx_backend

    sessions: list[Any] = []
    plain_options = onnx_backend.session_options
    plain_session = ort.InferenceSession

    def with_profiling(settings: Any) -> Any:
        options = plain_options(settings)
        options.enable_profiling = True
        options.profile_file_prefix = str(folder / f"{model_dir.name}-{workload}")
        return options

    def recorded(*args: Any, **kwargs: Any) -> Any:
        sessions.append(plain_session(*args, **kwargs))
        return sessions[-1]

    prompts, new_tokens = WORKLOADS[workload]
    plain = _service_runner("onnx", model_dir, prompts, new_tokens, threads)
    plain()  # warm
    started = time.perf_counter()
    for _ in range(runs):
        plain()
    unprofiled = time.perf_counter() - started
    onnx_backend.session_options = with_profiling
    ort.InferenceSession = recorded
    try:
        run = _service_runner("onnx", model_dir, prompts, new_tokens, threads)
        started = time.perf_counter()
        for _ in range(runs + 1):
            run()
        wall = time.perf_counter() - started
    finally:
        onnx_backend.session_options = plain_options
        ort.InferenceSession = plain_session
    (session,) = sessions
    events = json.loads(Path(session.end_profiling()).read_text())
    return events, wall, (runs + 1) * new_tokens, unprofiled * 1e3 / (runs * new_tokens)


def shares(
    events: list[dict[str, Any]], wall: float, steps: int, vocab: int, unprofiled_ms: float
) -> dict[str, Any]:
    """Milliseconds per step by operator, from the profile's events, and as shares of the step
    measured without the profiler (a fair share for the kernels that compute; the small nodes'
    times carry the profiler's own cost)."""
    by_operator: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    graph = 0.0
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            graph += event["dur"]
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        operator = event["args"]["op_name"]
        if operator == PRODUCT and _output_width(event) == vocab:
            operator = f"{PRODUCT} (output projection)"
        by_operator[operator] += event["dur"]
        calls[operator] += 1
    step_ms = wall * 1e3 / steps
    nodes = sum(by_operator.values())
    table = {
        operator: {
            "ms_per_step": total / 1e3 / steps,
            "share_of_unprofiled_step": total / 1e3 / steps / unprofiled_ms,
            "calls_per_step": calls[operator] / steps,
        }
        for operator, total in sorted(by_operator.items(), key=lambda item: -item[1])
    }
    return {
        "unprofiled_step_ms": unprofiled_ms,
        "step_ms": step_ms,
        "graph_ms_per_step": graph / 1e3 / steps,
        "nodes_ms_per_step": nodes / 1e3 / steps,
        "outside_graph_ms_per_step": step_ms - graph / 1e3 / steps,
        "node_runs_per_step": sum(calls.values()) / steps,
        "operators": table,
    }


def _output_width(event: dict[str, Any]) -> int | None:
    for output in event["args"].get("output_type_shape", []):
        for shape in output.values():
            return int(shape[-1]) if shape else None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    # More runs overflow the profiler's event buffer (a million events) on SmolLM2.
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--models", default="smollm2-135m,gpt2-124m")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    figures: dict[str, Any] = {"cpu": cpu_description(), "threads": args.threads}
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models.split(","):
            model_dir = args.work / model
            vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
            for workload in WORKLOADS:
                events, wall, steps, unprofiled_ms = profiled(
                    model_dir, workload, args.threads, args.runs, Path(scratch)
                )
                key = f"{model}/{workload}"
                figures[key] = shares(events, wall, steps, vocab, unprofiled_ms)
                print(key, round(figures[key]["step_ms"], 2), file=sys.stderr, flush=True)
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
