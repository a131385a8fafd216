"""How long ONNX Runtime's threads should spin for work: SmolLM2-135M's int8 export decoding
8 prompts x 64 new tokens through the product's runner, on an idle machine and beside two
CPU-burning processes (one per core of a 2-core machine), for several spin settings.

Each setting has its own sessions in one process; the settings take turns, round after round,
so that a slow patch of a shared machine hits all of them. tokens/s, median of the rounds.

- off: threads sleep as soon as they run out of work;
- N us: they spin up to N microseconds for the next piece within a step, and sleep between
  steps (session.force_spinning_stop; the product's ONNX_SPIN_WAIT_US);
- unbounded: ONNX Runtime's default (spin, also between steps), as the peer runs.

Reproduce (WORK: the --work folder of a bench/cpu_decoding.py run, which holds the models):

    python bench/spin_wait.py --work WORK --output bench/results/spin_wait-cpu-2core.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "layers")]

import onnxruntime as ort  # noqa: E402

from bench.cpu_decoding import neighbours  # noqa: E402
from bench.prompts import PROMPTS  # noqa: E402
from bench.report import report  # noqa: E402

SETTINGS_US: dict[str, int | None] = {"off": 0, "20 us": 20, "100 us": 100, "1 ms": 1000}
SETTINGS_US["unbounded"] = None
ROWS, NEW_TOKENS = 8, 64


def session_options(threads: int, spin_us: int | None) -> ort.SessionOptions:
    from textgen.backends.onnx_backend import session_options as product_options
    from textgen.settings import Settings

    if spin_us is not None:
        return product_options(Settings(torch_threads=threads, onnx_spin_wait_us=spin_us))
    options = product_options(Settings(torch_threads=threads, onnx_spin_wait_us=0))
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    return options


def tokens_per_second(runner: Any, prompts: list[list[int]]) -> float:
    started = time.perf_counter()
    runner.add_rows(prompts, NEW_TOKENS + max(len(p) for p in prompts), all_logits=False)
    for _ in range(NEW_TOKENS - 1):
        runner.step([1] * len(prompts))
    runner.truncate(0)
    return len(prompts) * NEW_TOKENS / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    from tokenizers import Tokenizer

    from textgen.backends.onnx_backend import embedding_tables
    from textgen.backends.onnx_runner import OnnxRunner

    model = args.work / "smollm2-135m"
    export = model / "onnx"
    metadata = json.loads((export / "textgen.json").read_text())
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    prompts = [e.ids for e in tokenizer.encode_batch(PROMPTS[:ROWS])]
    tables = embedding_tables(export, metadata)
    runners = {}
    for name, spin_us in SETTINGS_US.items():
        options = session_options(args.threads, spin_us)
        session = ort.InferenceSession(str(export / "model.onnx"), options)
        runners[name] = OnnxRunner(session, metadata, 0, tables)
    figures: dict[str, Any] = {"threads": args.threads, "rounds": args.rounds}
    for condition, burners in (("idle", 0), ("two_neighbours", 2)):
        samples: dict[str, list[float]] = {name: [] for name in runners}
        with neighbours(burners):
            for runner in runners.values():  # warm-up
                tokens_per_second(runner, prompts)
            for _ in range(args.rounds):
                for name, runner in runners.items():
                    samples[name].append(tokens_per_second(runner, prompts))
        figures[condition] = {name: statistics.median(s) for name, s in samples.items()}
        figures[f"{condition}_samples"] = samples
        print(condition, figures[condition], file=sys.stderr, flush=True)
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
