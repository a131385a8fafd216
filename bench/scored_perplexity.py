"""Held-out perplexity of SmolLM2 on the fast path (int8 export) against float32, decoded and
scored: the same windows as bench/cpu_decoding.py (every whole 512-token window of the held-out
Moby-Dick chapters), each window's second half
- decoded: after its first half as a prompt, a token at a time (teacher-forced), as generation
  meets it (the CPU-path issue's bound, +1.5%, is on these);
- scored: the whole window in one prompt pass with every position's logits, as `echo` with
  `logprobs` and lm-eval's loglikelihood tasks meet it;
and scored over the first half too (positions 1 to 255, with less context before them).
Reproduce with:

    python bench/scored_perplexity.py [--work DIR] [--output bench/results/....json]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.arguments import add_storage_options  # noqa: E402
from bench.cpu_decoding import (  # noqa: E402
    PERPLEXITY_TOKENS,
    PERPLEXITY_WINDOW,
    _log_softmax,
    cpu_description,
    prepare,
    score_windows,
)
from bench.report import report  # noqa: E402


def windows_of(smollm2: Path, cache: Path) -> list[list[int]]:
    from tokenizers import Tokenizer

    from textgen.demo.moby_dick import split

    held_out = "\n\n".join(split(cache).held_out.values())
    tokenizer = Tokenizer.from_file(str(smollm2 / "tokenizer.json"))
    ids = tokenizer.encode(held_out, add_special_tokens=False).ids[:PERPLEXITY_TOKENS]
    windows = [ids[i : i + PERPLEXITY_WINDOW] for i in range(0, len(ids), PERPLEXITY_WINDOW)]
    return [w for w in windows if len(w) == PERPLEXITY_WINDOW]


def measure(smollm2: Path, runtime: str, windows: list[list[int]]) -> dict[str, float]:
    """Summed log-probabilities: decoded second halves, scored second halves, scored firsts."""
    from textgen.backends import load_backend
    from textgen.families import Framework
    from textgen.settings import Settings

    settings = Settings(cpu_runtime=runtime, torch_dtype="float32", device="cpu")  # type: ignore[arg-type]
    backend = load_backend(Framework.PYTORCH, smollm2, settings)
    runner = backend.engine._runner  # type: ignore[attr-defined]
    context = PERPLEXITY_WINDOW // 2
    sums = {"decoded": score_windows(runner, windows, context), "scored": 0.0, "scored_first": 0.0}
    for window in windows:
        (logits,) = runner.add_rows([window], len(window), all_logits=True)
        for position in range(1, len(window)):
            value = _log_softmax(logits[position - 1])[window[position]]
            sums["scored" if position >= context else "scored_first"] += value
        runner.truncate(0)
    backend.engine.close()
    return sums


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_storage_options(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        smollm2 = prepare(args.work or Path(scratch), args.cache)["smollm2-135m"]
        windows = windows_of(smollm2, args.cache)
        context = PERPLEXITY_WINDOW // 2
        counts = {
            "decoded": len(windows) * (PERPLEXITY_WINDOW - context),
            "scored": len(windows) * (PERPLEXITY_WINDOW - context),
            "scored_first": len(windows) * (context - 1),
        }
        figures: dict[str, Any] = {"cpu": cpu_description(), "tokens": counts}
        for runtime in ("torch", "onnx"):
            sums = measure(smollm2, runtime, windows)
            figures[runtime] = {key: math.exp(-sums[key] / counts[key]) for key in counts}
        figures["onnx_vs_float32_percent"] = {
            key: 100 * (figures["onnx"][key] / figures["torch"][key] - 1) for key in counts
        }
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
