"""Single-request latency through the Lambda handler, this checkout against an older one.

A Lambda execution environment handles one invocation at a time, so there the engine must cost
nothing over generating the request directly. Each side runs in fresh processes (rounds
interleaved, so drifts in the machine's speed hit both): it imports `handlers.lambda_function`
from its checkout, invokes it once to load the model (a cold start, not counted), then times
--invocations warm invocations of a SAM-generated API Gateway event (one prompt, --new-tokens
new tokens, GPT-2 124M architecture), on PyTorch or, with --export, on the model's int8 ONNX
export as the Lambda image serves it (both sides read the export this checkout writes).
Reproduce with:

    git worktree add /tmp/before <older commit>
    python bench/lambda_latency.py --before /tmp/before [--rounds 3 --invocations 5]
    python bench/lambda_latency.py --before /tmp/before --export --new-tokens 1 --invocations 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks, as bench.*
from bench.cpu_decoding import cpu_description
from bench.report import report

REPO_ROOT = Path(__file__).resolve().parents[1]
EVENT = REPO_ROOT / "tests" / "events" / "rest-gpt2-model.json"

_PROBE = """
import json, sys, time

import handlers.lambda_function as module
from handlers.lambda_context import LocalLambdaContext
import textgen
assert textgen.__file__.startswith(sys.argv[1]), textgen.__file__
event = json.loads(open(sys.argv[2]).read())
invocations = int(sys.argv[3])
seconds = []
for index in range(invocations + 1):
    started = time.perf_counter()
    response = module.handler(event, LocalLambdaContext(remaining_ms=60_000))
    elapsed = time.perf_counter() - started
    assert response["statusCode"] == 200, response["body"]
    if index:
        seconds.append(elapsed)
print("LATENCIES " + json.dumps(seconds))
"""


def event_file(folder: Path, new_tokens: int) -> Path:
    event: dict[str, Any] = json.loads(EVENT.read_text())
    event["body"] = json.dumps(
        {"model_name": "gpt2-124m", "prompts": ["Hello, my name is"], "max_tokens": new_tokens}
    )
    event["isBase64Encoded"] = False
    path = folder / "event.json"
    path.write_text(json.dumps(event))
    return path


def latencies(checkout: Path, store: Path, event: Path, invocations: int) -> list[float]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{checkout}{os.pathsep}{checkout / 'layers'}",
        "MODEL_STORE": str(store),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "AWS_LAMBDA_FUNCTION_NAME": "textgen",
    }
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(checkout), str(event), str(invocations)],
        cwd=tempfile.gettempdir(),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("LATENCIES "))
    result: list[float] = json.loads(line.removeprefix("LATENCIES "))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="checkout of the older commit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--invocations", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--export", action="store_true", help="serve the int8 ONNX export")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    sides = {"before": args.before.resolve(), "after": REPO_ROOT}
    times: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as scratch:
        from textgen.demo.store import build_gpt2

        store = Path(scratch) / "store"
        build_gpt2(store / "gpt2-124m")  # GPT2Config() defaults: the 124M architecture
        if args.export:
            from textgen.convert.onnx_export import export_onnx

            export_onnx(store / "gpt2-124m")
        event = event_file(Path(scratch), args.new_tokens)
        for round_index in range(args.rounds):
            for name, checkout in sides.items():
                times[name] += latencies(checkout, store, event, args.invocations)
                print(f"round {round_index + 1} {name}: {times[name][-args.invocations :]}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    summary = {
        "cpu": cpu_description(),
        "runtime": "onnx int8 export" if args.export else "pytorch",
        "new_tokens": args.new_tokens,
        "invocations_per_side": len(times["after"]),
        "median_seconds": medians,
        "after_over_before": medians["after"] / medians["before"],
        "latencies": times,
    }
    report(summary, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
