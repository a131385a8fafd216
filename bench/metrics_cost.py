"""What counting costs: the engine's tokens/s with the Prometheus metrics on and off.

One process, one service (the model's ONNX int8 export loaded once), rounds interleaved with the
service telling handlers.prometheus of every finished request (as the app's does) and telling
nobody: the same requests (each of the prompts --repeat times, up to 64 greedy tokens) sent
straight to the engine at once. The engine's own counting (first-token times, steps by
rows) runs in both: it is not optional. Reports tokens/s of each (median) and the ratio.
Reproduce with:

    python bench/metrics_cost.py [--work DIR] [--rounds 5] [--output ...]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the benchmarks beside this one, as bench.*

from bench.report import report  # noqa: E402
from bench.run_batch import (  # noqa: E402
    engine_bench_arguments,
    engine_direct,
    prepared_store,
    requests_and_figures,
)
from handlers.prometheus import observe_finished  # noqa: E402
from textgen.generation import FinishedRequest  # noqa: E402
from textgen.service import GenerationService  # noqa: E402
from textgen.store import LocalModelStore  # noqa: E402


def main() -> int:
    args = engine_bench_arguments(__doc__ or "", rounds=5, repeat=4)
    prompts, figures = requests_and_figures(args)
    with tempfile.TemporaryDirectory() as scratch:
        store, settings = prepared_store(args, scratch, "metrics-cost-store")
        hooks: dict[str, Callable[[FinishedRequest], None] | None] = {
            "metrics_on": observe_finished,
            "metrics_off": None,
        }
        chosen: list[Callable[[FinishedRequest], None] | None] = [None]

        def on_finished(request: FinishedRequest) -> None:
            if (hook := chosen[0]) is not None:
                hook(request)

        service = GenerationService(settings, LocalModelStore(store), on_finished=on_finished)
        for model in ("smollm2-135m", "gpt2-124m"):
            runs: dict[str, list[float]] = {name: [] for name in hooks}
            engine_direct(service, model, prompts[:2])  # load and warm up
            for index in range(args.rounds):
                order = list(hooks.items())
                for name, hook in order if index % 2 == 0 else order[::-1]:
                    chosen[0] = hook
                    runs[name].append(engine_direct(service, model, prompts))
            medians = {name: statistics.median(values) for name, values in runs.items()}
            figures["models"][model] = {
                "tokens_per_second": medians,
                "runs": runs,
                "ratio_on_to_off": medians["metrics_on"] / medians["metrics_off"],
            }
            print(model, figures["models"][model], file=sys.stderr, flush=True)
        service.close(grace_seconds=0)
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
