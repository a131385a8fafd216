"""What counting costs: the engine's tokens/s with the Prometheus metrics on and off.

One process, one service (the model's ONNX int8 export loaded once), runs alternating between
the service telling handlers.prometheus of every finished request (as the app's does) and telling
nobody: the same requests (each of the prompts --repeat times, up to 64 greedy tokens) sent
straight to the engine at once. The engine's own counting (first-token times, steps by
rows) runs in both: it is not optional.

On 2 shared cores a single run's tokens/s moves by 10-20% with the host's other load, far more
than counting can cost, and that load changes over seconds: so the runs are short (a second or
less) and many, each "on" run paired with the "off" run beside it (the order swapped every round),
and the figure is the median of the pairs' ratios with a bootstrap 95% interval (the interval
inside 0.98..1.02: the two are at most 2% apart). Also reported: the share of each run's wall time
spent inside the counting itself (the hook, timed as it runs) and what one scrape of /metrics
costs. Reproduce with:

    python bench/metrics_cost.py [--work DIR] [--rounds 60] [--repeat 1] [--output ...]
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
    args = engine_bench_arguments(__doc__ or "", rounds=60, repeat=1)
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
            medians = {name: statistics.median(values) for name, values in runs.items()}
            paired = [on / off for on, off in zip(*runs.values(), strict=True)]
            low, high = median_interval(paired)
            scrape = _scrape_seconds(service)
            figures["models"][model] = {
                "tokens_per_second": medians,
                "runs": runs,
                "ratio_on_to_off": medians["metrics_on"] / medians["metrics_off"],
                "paired_ratio_median": statistics.median(paired),
                "paired_ratio_median_95_interval": [low, high],
                "within_2_percent": low >= 0.98 and high <= 1.02,
                "counting_share_of_wall_time": statistics.median(shares),
                "scrape_seconds": scrape,
            }
            print(model, figures["models"][model], file=sys.stderr, flush=True)
        service.close(grace_seconds=0)
    report(figures, args.output)
    return 0


def median_interval(values: list[float], draws: int = 10_000) -> tuple[float, float]:
    """A bootstrap 95% interval of the median of `values` (a fixed seed: reruns agree)."""
    import numpy as np

    samples = np.random.default_rng(0).choice(values, size=(draws, len(values)))
    low, high = np.percentile(np.median(samples, axis=1), [2.5, 97.5])
    return float(low), float(high)


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
