"""What counting costs: the engine's tokens/s with the Prometheus metrics on and off.

One process, one service (the model's ONNX int8 export loaded once), rounds interleaved with the
service telling handlers.prometheus of every finished request (as the app's does) and telling
nobody: the same requests (each of the prompts --repeat times, up to 64 greedy tokens) sent
straight to the engine at once. The engine's own counting (first-token times, steps by
rows) runs in both: it is not optional. Reports tokens/s of each (median), the ratio and the
median of each round's pair's ratio; tokens per CPU second of the process the same way (less
moved by the host's other load than wall time); and,
since on 2 shared cores the runs differ by far more than counting can cost, the share of each
run's wall time spent inside the counting itself (the hook, timed as it runs) and what one
scrape of /metrics costs.
Reproduce with:

    python bench/metrics_cost.py [--work DIR] [--rounds 5] [--output ...]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
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
from handlers.prometheus import observe_finished, registry_for  # noqa: E402
from textgen.generation import FinishedRequest  # noqa: E402
from textgen.service import GenerationService  # noqa: E402
from textgen.store import LocalModelStore  # noqa: E402


def main() -> int:
    args = engine_bench_arguments(__doc__ or "", rounds=5, repeat=4)
    prompts, figures = requests_and_figures(args)
    with tempfile.TemporaryDirectory() as scratch:
        store, settings = prepared_store(args, scratch, "metrics-cost-store")
        spent = [0.0]  # seconds inside the hook, this run

        def timed_observe(request: FinishedRequest) -> None:
            started = time.perf_counter()
            observe_finished(request)
            spent[0] += time.perf_counter() - started

        hooks: dict[str, Callable[[FinishedRequest], None] | None] = {
            "metrics_on": timed_observe,
            "metrics_off": None,
        }
        chosen: list[Callable[[FinishedRequest], None] | None] = [None]

        def on_finished(request: FinishedRequest) -> None:
            if (hook := chosen[0]) is not None:
                hook(request)

        service = GenerationService(settings, LocalModelStore(store), on_finished=on_finished)
        for model in ("smollm2-135m", "gpt2-124m"):
            runs: dict[str, list[float]] = {name: [] for name in hooks}
            cpu: dict[str, list[float]] = {name: [] for name in hooks}  # tokens per CPU second
            shares: list[float] = []  # of a run's wall time, spent counting its requests
            engine_direct(service, model, prompts[:2])  # load and warm up
            for index in range(args.rounds):
                order = list(hooks.items())
                for name, hook in order if index % 2 == 0 else order[::-1]:
                    chosen[0], spent[0] = hook, 0.0
                    started = time.perf_counter()
                    runs[name].append(engine_direct(service, model, prompts))
                    if hook is not None:
                        shares.append(spent[0] / (time.perf_counter() - started))
                    cpu[name].append(engine_direct(service, model, prompts, time.process_time))
            medians = {name: statistics.median(values) for name, values in runs.items()}
            paired = [on / off for on, off in zip(*runs.values(), strict=True)]
            paired_cpu = [on / off for on, off in zip(*cpu.values(), strict=True)]
            scrape = _scrape_seconds(service)
            figures["models"][model] = {
                "tokens_per_second": medians,
                "runs": runs,
                "ratio_on_to_off": medians["metrics_on"] / medians["metrics_off"],
                "paired_ratio_median": statistics.median(paired),
                "tokens_per_cpu_second": {n: statistics.median(v) for n, v in cpu.items()},
                "paired_cpu_ratio_median": statistics.median(paired_cpu),
                "cpu_runs": cpu,
                "counting_share_of_wall_time": statistics.median(shares),
                "scrape_seconds": scrape,
            }
            print(model, figures["models"][model], file=sys.stderr, flush=True)
        service.close(grace_seconds=0)
    report(figures, args.output)
    return 0


def _scrape_seconds(service: GenerationService) -> float:
    """What one /metrics scrape costs (the text of every metric), median of 20."""
    from prometheus_client import generate_latest

    registry = registry_for(service)
    times = []
    for _ in range(20):
        started = time.perf_counter()
        generate_latest(registry)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


if __name__ == "__main__":
    raise SystemExit(main())
