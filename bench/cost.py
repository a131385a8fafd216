"""Dollars per million output tokens, from tokens/s measured here and AWS's published prices
(bench/aws_prices.json: each price with its source and the date it was read).

Measured on this machine, in a child process pinned to 1 and then 2 of its cores (a Lambda
function of 1,769 MB has one vCPU, of 3,538 MB two), each model on its ONNX int8 export (the
default CPU path, what the Lambda image serves):
- interactive: one request at a time, as a Lambda instance serves them (128 new tokens each,
  generated past the end token so that every request costs the same; the whole request timed,
  prompt included, as Lambda bills it);
- batch: a chunk of 64 lines of the Batch API, all in flight together through the batch runner
  (what a batch worker runs), greedy, each line's completion tokens counted.

Priced from those figures:
- Lambda at 1 and 2 vCPUs (measured) and 6 vCPUs (10,240 MB: extrapolated, batch throughput
  three times the 2-vCPU figure, interactive unchanged from it: one stream of a model this size
  gains little from more cores);
- Lambda Managed Instances on a c7i.large (2 vCPUs): Python runs one process per concurrent
  request, each loading its own model, so the instance's throughput is modelled as two 1-vCPU
  processes fully busy; its price is the instance's plus the management fee;
- a GPU container on a g5.xlarge: unmeasured until a device gives figures.

Reproduce with:

    python bench/cost.py [--work DIR] [--rounds 3] [--output bench/results/cost-....json]
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(REPO_ROOT))

from bench.arguments import add_storage_options  # noqa: E402
from bench.cpu_decoding import cpu_description, prepare  # noqa: E402
from bench.first_token import store_of  # noqa: E402
from bench.prompts import PROMPTS  # noqa: E402
from bench.report import report  # noqa: E402

PRICES = json.loads((REPO_ROOT / "bench" / "aws_prices.json").read_text())
MODELS = ("smollm2-135m", "gpt2-124m")
NEW_TOKENS = 128
CHUNK_LINES = 64
INTERACTIVE_REQUESTS = 8
LAMBDA_MB = {1: 1769, 2: 3538, 6: 10240}


def measure(store: Path, model: str) -> dict[str, float]:
    """In this (pinned) process: interactive and batch tokens/s of `model`."""
    from bench.run_batch import through_batch
    from handlers.openai_api.serving import OpenAIServing
    from textgen.engine import SamplingParams
    from textgen.service import GenerationRequest, GenerationService
    from textgen.settings import Settings
    from textgen.store import LocalModelStore

    settings = Settings(model_store=str(store), max_queued_requests=CHUNK_LINES)
    service = GenerationService(settings, LocalModelStore(store))
    serving = OpenAIServing(service)
    sampling = SamplingParams(ignore_eos=True)

    def one(prompt: str, tokens: int) -> int:
        request = GenerationRequest(model, [prompt], None, max_tokens=tokens, sampling=sampling)
        return sum(o.tokens for o in service.submit(request).wait())

    one(PROMPTS[0], 8)  # load and warm up
    started, tokens = time.perf_counter(), 0
    for index in range(INTERACTIVE_REQUESTS):
        tokens += one(PROMPTS[index % len(PROMPTS)], NEW_TOKENS)
    interactive = tokens / (time.perf_counter() - started)

    prompts = [PROMPTS[index % len(PROMPTS)] for index in range(CHUNK_LINES)]
    batch = through_batch(serving, model, prompts, CHUNK_LINES, NEW_TOKENS)
    service.close(grace_seconds=0)
    return {"interactive": interactive, "batch": batch}


def run_pinned(store: Path, model: str, vcpus: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(store), model, str(vcpus)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'layers'}"},
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def per_million(dollars_per_second: float, tokens_per_second: float) -> float:
    return dollars_per_second / tokens_per_second * 1e6


def cost_table(speeds: dict[int, dict[str, float]]) -> list[dict[str, Any]]:
    """$ per million output tokens, per deployment, from tokens/s by vCPUs."""
    lam, lmi, ec2 = (
        PRICES["lambda"],
        PRICES["lambda_managed_instances"],
        PRICES["ec2_on_demand_per_hour"],
    )
    request_fee = lam["per_million_requests"] / 1e6
    rows: list[dict[str, Any]] = []
    six = {"interactive": speeds[2]["interactive"], "batch": 3 * speeds[2]["batch"]}
    for vcpus, speed, basis in [
        (1, speeds[1], "measured"),
        (2, speeds[2], "measured"),
        (6, six, "extrapolated"),
    ]:
        per_second = LAMBDA_MB[vcpus] / 1024 * lam["x86_gb_second"]
        rows.append(
            {
                "deployment": f"Lambda, {LAMBDA_MB[vcpus]:,} MB ({vcpus} vCPU)",
                "basis": basis,
                "tokens_per_second": speed,
                "interactive": per_million(per_second, speed["interactive"])
                + request_fee / NEW_TOKENS * 1e6,
                "batch": per_million(per_second, speed["batch"])
                + request_fee / (CHUNK_LINES * NEW_TOKENS) * 1e6,
            }
        )
    instance = ec2["c7i.large"] * (1 + lmi["management_fee_of_ec2_price"]) / 3600
    two_processes = {key: 2 * value for key, value in speeds[1].items()}
    rows.append(
        {
            "deployment": "Lambda Managed Instances, c7i.large (2 vCPUs)",
            "basis": "modelled: two 1-vCPU processes, the instance fully busy",
            "tokens_per_second": two_processes,
            "interactive": per_million(instance, two_processes["interactive"])
            + lmi["per_million_requests"] / NEW_TOKENS,
            "batch": per_million(instance, two_processes["batch"])
            + lmi["per_million_requests"] / (CHUNK_LINES * NEW_TOKENS),
        }
    )
    rows.append(
        {
            "deployment": "GPU container, g5.xlarge (A10G)",
            "basis": "unmeasured: no GPU figures yet",
            "tokens_per_second": None,
            "interactive": None,
            "batch": None,
            "dollars_per_hour": ec2["g5.xlarge"],
        }
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    add_storage_options(parser)
    args = parser.parse_args()
    if args.child:
        store, model, vcpus = args.child
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: int(vcpus)]))
        print(json.dumps(measure(Path(store), model)))
        return 0
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("this benchmark needs 2 cores")
    figures: dict[str, Any] = {"cpu": cpu_description(), "prices": PRICES, "models": {}}
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        store = store_of(prepare(work, args.cache), work / "cost-store")
        for model in MODELS:
            runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
            for _ in range(args.rounds):  # interleaved: drift on a shared machine hits both
                for vcpus in runs:
                    runs[vcpus].append(run_pinned(store, model, vcpus))
            speeds = {
                vcpus: {key: statistics.median(r[key] for r in measured) for key in measured[0]}
                for vcpus, measured in runs.items()
            }
            figures["models"][model] = {"runs": runs, "costs": cost_table(speeds)}
            print(model, json.dumps(speeds), file=sys.stderr, flush=True)
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
