"""CPU decoding: the fast path (ONNX Runtime int8) against its peer, PyTorch and the original.

On one machine, interleaved (rounds, each system in a fresh process), for GPT-2 124M architecture
(random weights) and SmolLM2-135M-Instruct (the real LLaMA), 8 prompts x 64 new tokens and
1 prompt x 128, greedy:

- pipeline: the original app's `transformers.pipeline("text-generation")`, once per prompt;
- torch: the service's engine on PyTorch, float32 (CPU_RUNTIME=torch);
- onnx: the service's engine on its ONNX export, int8 (`textgen export-onnx`, CPU_RUNTIME=onnx);
- peer: ONNX Runtime int8 with a plain KV-cache loop, built here (bench/peer_export.py), not
  through the product's code: signed 8-bit weights (U8S8 kernels), the fastest on x86;
- peer_u8u8: the same peer with unsigned 8-bit weights, as the product exports them: on x86
  CPUs without VNNI, ONNX Runtime's U8S8 kernels saturate and the peer's text is garbage (its
  perplexity below says so), so this is the peer that is right on every CPU;
- llama_cpp, llama_cpp_q4_1 (SmolLM2 only, where llama-cpp-python is installed): llama.cpp on
  SmolLM2's GGUF requantized to Q8_0, and as it ships (Q4_1), one prompt after another
  (bench/llama_cpp_peer.py says how to build it).

Every system makes every token: the service is asked to ignore the end token (SamplingParams
ignore_eos), as the peer's loop and the pipeline (min_new_tokens) do, so tokens/s compare equal
work. Reported per system and workload: tokens/s (median of the warm runs), ratio to the peer, peak
resident memory, seconds from process start to the first token. Then the perplexity of held-out
Moby-Dick chapters (textgen.demo.moby_dick.HELD_OUT_CHAPTERS, every whole window of them) on
SmolLM2 through float32 PyTorch,
the fast path and the peer, as generation meets it: each window's first half is the prompt, its
second half is decoded a token at a time (teacher-forced) and scored; and tokens/s with a
CPU-burning neighbour on every core. The report names the CPU and its AVX-512 / AMX features.
Reproduce with:

    python bench/cpu_decoding.py [--rounds 3] [--output bench/results/cpu_decoding-cpu-2core.json]

(--skip-perplexity leaves the perplexities out: speed, memory and start-up only.)
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the benchmarks beside this one, as bench.*

from bench import llama_cpp_peer  # noqa: E402
from bench.arguments import add_storage_options  # noqa: E402
from bench.bytecode import compile_checkout  # noqa: E402
from bench.llama_cpp_peer import GGUF_FORMATS  # noqa: E402
from bench.prompts import PROMPTS  # noqa: E402
from bench.report import report  # noqa: E402

WORKLOADS = {"8x64": (PROMPTS, 64), "1x128": (PROMPTS[:1], 128)}
SYSTEMS = ("pipeline", "torch", "onnx", "peer", "peer_u8u8", *GGUF_FORMATS)
PEER_FOLDERS = {"peer": "peer", "peer_u8u8": "peer-u8u8"}
MODELS = {"gpt2-124m": "gpt2", "smollm2-135m": "llama"}
WARM_RUNS = 2
PERPLEXITY_WINDOW = 512  # tokens per window: the first half the prompt, the second half scored
PERPLEXITY_TOKENS = 32768  # of held-out text, in windows: all of it (22,805 tokens of SmolLM2's)


# ---- one system, one workload, in a fresh process (--child)


def child(system: str, model_dir: Path, workload: str, threads: int) -> dict[str, Any]:
    prompts, new_tokens = WORKLOADS[workload]
    run = _runner(system, model_dir, prompts, new_tokens, threads)
    first_token = run()  # the cold run: absolute time of its first token
    times = []
    for _ in range(WARM_RUNS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return {
        "tokens_per_second": len(prompts) * new_tokens / statistics.median(times),
        "first_token_unix": first_token,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux carries that across
    fork and exec, so a child would report its parent's peak when that was higher."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _runner(system: str, model_dir: Path, prompts: list[str], new_tokens: int, threads: int) -> Any:
    """A function that generates the workload once and returns its first token's unix time."""
    if system in GGUF_FORMATS:
        from tokenizers import Tokenizer

        from bench.llama_cpp_peer import LlamaCppPeer

        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        llama = LlamaCppPeer(gguf_path(model_dir, GGUF_FORMATS[system]), threads)
        ids = [e.ids for e in tokenizer.encode_batch(prompts)]

        def run_llama() -> float:
            first = llama.generate(ids, new_tokens)
            return float(time.time() - (time.perf_counter() - first))

        return run_llama
    if system in PEER_FOLDERS:
        from tokenizers import Tokenizer

        from bench.peer_decode import Peer

        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        peer = Peer(model_dir / PEER_FOLDERS[system], threads)
        ids = [e.ids for e in tokenizer.encode_batch(prompts)]

        def run_peer() -> float:
            _, first = peer.generate(ids, new_tokens)
            return float(time.time() - (time.perf_counter() - first))

        return run_peer
    if system == "pipeline":
        import torch
        from transformers import pipeline

        torch.set_num_threads(threads)
        generator = pipeline("text-generation", model=str(model_dir), dtype=torch.float32)

        def run_pipeline() -> float:
            first = 0.0
            for prompt in prompts:
                generator(
                    prompt,
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    do_sample=False,
                    return_full_text=False,
                )
                first = first or time.time()  # a whole prompt's text comes at once
            return first

        return run_pipeline
    return _service_runner(system, model_dir, prompts, new_tokens, threads)


def _service_runner(
    system: str, model_dir: Path, prompts: list[str], new_tokens: int, threads: int
) -> Any:
    from textgen.engine import SamplingParams
    from textgen.families import Family
    from textgen.service import GenerationRequest, GenerationService
    from textgen.settings import Settings
    from textgen.store import LocalModelStore

    settings = Settings(
        model_store=str(model_dir.parent),
        cpu_runtime="torch" if system == "torch" else "onnx",
        torch_dtype="float32",
        torch_threads=threads,
        device="cpu",
    )
    service = GenerationService(settings, LocalModelStore(model_dir.parent))
    atexit.register(service.close, 10)  # its engine thread ends before the interpreter does
    family = Family(json.loads((model_dir / "config.json").read_text())["model_type"])
    # Every system makes every token (the peer's loop knows no end token): equal work.
    request = GenerationRequest(
        model_dir.name,
        prompts,
        family,
        max_tokens=new_tokens,
        sampling=SamplingParams(ignore_eos=True),
        stream=True,
    )

    def run_service() -> float:
        generation = service.submit(request)
        first = 0.0

        async def consume() -> None:
            nonlocal first
            async for _ in generation.events():
                first = first or time.time()

        import asyncio

        asyncio.run(consume())
        outputs = generation.wait()
        if any(len(o.token_ids) != new_tokens for o in outputs):
            raise RuntimeError("a prompt ended early")
        return first

    return run_service


# ---- perplexity


def perplexities(smollm2: Path, threads: int, cache: Path) -> dict[str, Any]:
    from tokenizers import Tokenizer

    from bench.peer_decode import Peer
    from textgen.demo.moby_dick import split

    held_out = "\n\n".join(split(cache).held_out.values())
    tokenizer = Tokenizer.from_file(str(smollm2 / "tokenizer.json"))
    ids = tokenizer.encode(held_out, add_special_tokens=False).ids[:PERPLEXITY_TOKENS]
    windows = [ids[i : i + PERPLEXITY_WINDOW] for i in range(0, len(ids), PERPLEXITY_WINDOW)]
    windows = [w for w in windows if len(w) == PERPLEXITY_WINDOW]
    context = PERPLEXITY_WINDOW // 2
    scored = len(windows) * (PERPLEXITY_WINDOW - context)
    results: dict[str, Any] = {"tokens_scored": scored, "window": PERPLEXITY_WINDOW}
    for runtime in ("torch", "onnx"):
        total = _decoded_log_likelihood(smollm2, runtime, windows, context, threads)
        results[runtime] = math.exp(-total / scored)
    for name, folder in PEER_FOLDERS.items():
        peer = Peer(smollm2 / folder, threads)
        total = sum(peer.log_likelihood(w, start=context) for w in windows)
        results[name] = math.exp(-total / scored)
    for name in ("onnx", *PEER_FOLDERS):
        results[f"{name}_vs_float32_percent"] = 100 * (results[name] / results["torch"] - 1)
    return results


def _decoded_log_likelihood(
    model_dir: Path,
    runtime: str,
    windows: list[list[int]],
    context: int,
    threads: int,
    torch_dtype: str = "float32",  # explicit: "auto" is bfloat16 on CPUs with AVX512-BF16 or AMX
) -> float:
    """Sum over windows of the log-probabilities of window[context:], each predicted by a
    decoding step of the service's runner after window[:context] went in as a prompt."""
    from textgen.backends import load_backend
    from textgen.families import Framework
    from textgen.settings import Settings

    settings = Settings(
        cpu_runtime=runtime,  # type: ignore[arg-type]
        torch_dtype=torch_dtype,  # type: ignore[arg-type]
        torch_threads=threads,
        device="cpu",
    )
    backend = load_backend(Framework.PYTORCH, model_dir, settings)
    # The engine idles: its runner is the bench's to drive.
    runner = backend.engine._runner  # type: ignore[attr-defined]
    total = score_windows(runner, windows, context)
    backend.engine.close()
    return total


def score_windows(
    runner: Any, windows: list[list[int]], context: int, take_prompt: Any = None
) -> float:
    """Sum over windows of the log-probabilities of window[context:], each predicted by a
    decoding step of `runner` after window[:context] went in: through the runner's prompt pass,
    or `take_prompt(prompt, width)`, which returns the logits of the prompt's last token."""
    total = 0.0
    for window in windows:
        if take_prompt is None:
            (logits,) = runner.add_rows([window[:context]], len(window), all_logits=False)
        else:
            logits = take_prompt(window[:context], len(window))
        for position in range(context, len(window)):
            total += _log_softmax(logits)[window[position]]
            if position + 1 < len(window):
                logits = runner.step([window[position]])[0]
        runner.truncate(0)
    return total


def _log_softmax(logits: Any) -> Any:
    import numpy as np

    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits)
    return shifted - np.log(np.exp(shifted).sum())


# ---- the driver


@contextmanager
def neighbours(count: int) -> Any:
    """Processes that burn a core each, as other tenants of a shared machine do."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def cpu_description() -> dict[str, Any]:
    """The CPU's model name and the AVX-512 / AMX features that decide ONNX Runtime's kernels."""
    from textgen.backends.cpu import cpu_flags

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line]
    wanted = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx_vnni")))
    return {"model": names[0] if names else "", "features": wanted, "cores": os.cpu_count()}


def run_child(system: str, model_dir: Path, workload: str, threads: int) -> dict[str, Any]:
    started = time.time()
    done = subprocess.run(
        [sys.executable, __file__, "--child", system, str(model_dir), workload, str(threads)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'layers'}"},
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["start_to_first_token_s"] = result.pop("first_token_unix") - started
    return result


def prepare(work: Path, cache: Path) -> dict[str, Path]:
    """The two models, each with the product's ONNX export and the peer's graph (kept in work
    when it is given: a rerun skips this)."""
    from textgen.convert.gguf_import import import_gguf
    from textgen.convert.onnx_export import has_current_export
    from textgen.demo.public_data import smollm2_gguf
    from textgen.demo.store import build_gpt2

    folders = {"gpt2-124m": work / "gpt2-124m", "smollm2-135m": work / "smollm2-135m"}
    if not (folders["gpt2-124m"] / "config.json").is_file():
        build_gpt2(folders["gpt2-124m"])  # GPT2Config() defaults: the 124M architecture
    if not (folders["smollm2-135m"] / "config.json").is_file():
        import_gguf(smollm2_gguf(cache), folders["smollm2-135m"], dtype="float32")
    gguf_folder = folders["smollm2-135m"] / "gguf"
    if llama_cpp_peer.available() and not gguf_path(folders["smollm2-135m"], "Q8_0").is_file():
        gguf_folder.mkdir(exist_ok=True)
        shipped = shutil.copy2(smollm2_gguf(cache), gguf_path(folders["smollm2-135m"], "Q4_1"))
        llama_cpp_peer.requantize_q8_0(Path(shipped), gguf_path(folders["smollm2-135m"], "Q8_0"))
    peer_export = str(REPO_ROOT / "bench" / "peer_export.py")
    for folder in folders.values():
        steps = {
            "onnx": [sys.executable, "-m", "handlers.cli", "export-onnx", str(folder)],
            "peer": [sys.executable, peer_export, str(folder), str(folder / "peer")],
            "peer-u8u8": [
                *(sys.executable, peer_export, str(folder), str(folder / "peer-u8u8")),
                "--unsigned",
            ],
        }
        for output, command in steps.items():
            stale = output == "onnx" and not has_current_export(folder)  # an older format's
            if not (folder / output).is_dir() or stale:
                subprocess.run(command, check=True, cwd=REPO_ROOT)
    return folders


def gguf_path(model_dir: Path, quantization: str) -> Path:
    """Where prepare() keeps the model's GGUF file in that quantization (SmolLM2 only)."""
    return model_dir / "gguf" / f"model-{quantization.lower()}.gguf"


def applies(system: str, model: str) -> bool:
    """llama.cpp runs SmolLM2's GGUF, where llama-cpp-python is installed; the rest run all."""
    return system not in GGUF_FORMATS or (model == "smollm2-135m" and llama_cpp_peer.available())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument(
        "--skip-perplexity", action="store_true", help="speed, memory and start-up only"
    )
    parser.add_argument("--child", nargs=4, metavar=("SYSTEM", "MODEL_DIR", "WORKLOAD", "THREADS"))
    add_storage_options(parser)
    args = parser.parse_args()
    if args.child:
        system, model_dir, workload, threads = args.child
        print(json.dumps(child(system, Path(model_dir), workload, int(threads))))
        return 0
    compile_checkout(REPO_ROOT)  # its start-up is timed as the image's, from bytecode

    systems = args.systems.split(",")
    figures: dict[str, Any] = {
        "cpu": cpu_description(),
        "threads": args.threads,
        "rounds": args.rounds,
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        folders = prepare(args.work or Path(scratch), args.cache)
        runs: dict[str, list[dict[str, Any]]] = {}
        for round_index in range(args.rounds):
            order = systems[round_index % len(systems) :] + systems[: round_index % len(systems)]
            for model, folder in folders.items():
                for workload in WORKLOADS:
                    for system in (s for s in order if applies(s, model)):
                        key = f"{model}/{workload}/{system}"
                        runs.setdefault(key, []).append(
                            run_child(system, folder, workload, args.threads)
                        )
                        print(key, runs[key][-1], file=sys.stderr, flush=True)
        for key, values in runs.items():
            figures["runs"][key] = {
                field: statistics.median(v[field] for v in values) for field in values[0]
            }
        for key, row in figures["runs"].items():
            model, workload, _ = key.split("/")
            for name in (*PEER_FOLDERS, *GGUF_FORMATS):
                peer = figures["runs"].get(f"{model}/{workload}/{name}")
                if peer:
                    row[f"ratio_to_{name}"] = row["tokens_per_second"] / peer["tokens_per_second"]
        if not args.skip_perplexity:
            figures["perplexity_smollm2"] = perplexities(
                folders["smollm2-135m"], args.threads, args.cache
            )
        with neighbours(args.threads):
            figures["with_neighbours"] = {
                system: run_child(system, folders["smollm2-135m"], "8x64", args.threads)
                for system in ("torch", "onnx", *PEER_FOLDERS)
                if system in systems
            }
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
