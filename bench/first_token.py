"""Cold start: a fresh process from its start to its first token, against llama.cpp (local disk)
and against the sum of its own parts (S3).

What a new Lambda instance does before its first user sees a token. Each measurement is a fresh
process (rounds interleaved, so drifts in the machine's speed hit every system alike), the model's
files on local disk with the page cache warm, or, with --store s3, in moto's S3 server on
loopback (each process with an empty model cache):

- ours: import `handlers.lambda_function` and invoke it with an API Gateway HTTP API event for
  `POST /llama_model` (or `/gpt2_model`), `max_tokens` 1, the model's ONNX int8 export in the
  store, PRELOAD_MODELS naming the model (loading overlaps the imports: handlers/warm_start.py);
- ours, not preloaded: the same without PRELOAD_MODELS (everything after the imports);
- ours, sole model (local store only): no PRELOAD_MODELS, a store holding that model alone, and
  PRELOAD_SOLE_MODEL=true as the Lambda image sets it (the loading thread lists the store first);
- ours, parts: the same as "not preloaded", each part timed one after another: interpreter start,
  imports (the handler's, then the engine's: onnxruntime, tokenizers), store, weights (an int8
  graph's weights flipped in memory when stored in the other form), session creation, tokenizer
  (read after the session here, where a load reads it beside), the request to its first token
  (the rest of the invocation);
- ours, timeline: "ours" with the moment each step begins and ends, on whichever thread runs
  it (the loading thread's start, the fetch from S3, onnxruntime's import, the session, the
  tokenizer; the handler's import; the first token), so the path to the first token can be read
  off; then, after the first token, the same graph's session alone: as served, without
  prepacking (the layout ONNX Runtime's integer kernels pack their weights into at every load),
  and from a copy that ONNX Runtime saved with its packed weights beside the others (its
  `session.save_external_prepacked_constant_initializers`), packed on this CPU;
- llama_cpp (SmolLM2, where llama-cpp-python is installed, built as bench/llama_cpp_peer.py
  says): import `llama_cpp`, load the Q8_0 GGUF, tokenize the prompt, complete one token.

GPT-2 124M (random weights) has no llama.cpp side (no GGUF of it); its ratio is to llama.cpp's
SmolLM2 figure, a model of its size. Reports medians, and the ratios of ours to llama.cpp.
From S3 (published as `textgen publish` publishes: PyTorch weights and the export), the
preloaded cold start against the sum of the same parts one after another (the "parts" process,
whose store part is the download, verified as it streams), and moto's throughput as the store saw
it (real S3's is not measurable here). Every run also reports the CPU seconds it used and, from S3,
those moto's server used meanwhile: their sum over the wall time is how many cores were busy, so a
run whose cores were all busy could not have overlapped its parts any further. Reproduce with:

    python bench/first_token.py [--rounds 7] [--work DIR] [--output bench/results/...json]
    python bench/first_token.py --store s3 [--rounds 5] [--work DIR] [--output ...]
    python bench/first_token.py --store s3 --systems ours,ours_parts,ours_timeline ...

An older checkout, measured the same way ("before"; its own export, so its own --work folder):

    git worktree add /tmp/before <commit>
    python bench/first_token.py --source /tmp/before --work DIR2 --systems ours_not_preloaded

or, where it reads this checkout's export format, interleaved with this one in the same rounds
(system ours_before; any of ours' systems with _before runs from the older checkout):

    python bench/first_token.py --before /tmp/before --systems ours,llama_cpp
    python bench/first_token.py --before /tmp/before \
        --systems ours_not_preloaded,ours_not_preloaded_before

Every checkout measured is compiled to bytecode first, as the images ship it (bench/bytecode.py).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the benchmarks beside this one, as bench.*

from bench import llama_cpp_peer  # noqa: E402
from bench.arguments import add_storage_options  # noqa: E402
from bench.bytecode import compile_checkout  # noqa: E402
from bench.cpu_decoding import cpu_description, gguf_path, prepare  # noqa: E402
from bench.report import report  # noqa: E402
from textgen.model_files import ONNX_EXPORT_DIR, ONNX_MODEL_FILE  # noqa: E402

PROMPT = "The capital of France is"
ROUTES = {"smollm2-135m": "/llama_model", "gpt2-124m": "/gpt2_model"}
SYSTEMS = (
    "ours",
    "ours_not_preloaded",
    "ours_sole_model",
    "ours_parts",
    "ours_timeline",
    "llama_cpp",
)
EVENT = REPO_ROOT / "tests" / "events" / "http-gpt2-model.json"  # made by the SAM CLI

_OURS = """
import json, sys, time
started = time.time()
import handlers.lambda_function as module
from handlers.lambda_context import LocalLambdaContext
event = json.loads(open(sys.argv[1]).read())
response = module.handler(event, LocalLambdaContext(remaining_ms=60_000))
assert response["statusCode"] == 200, response["body"]
print(json.dumps({"started": started, "first_token": time.time()}))
"""

# The same invocation with each part of a load timed where it happens (wrapped, not changed).
_OURS_PARTS = """
import json, sys, time
parts, started = {}, time.time()
import handlers.lambda_function as module
from handlers.lambda_context import LocalLambdaContext
parts["imports: handler"] = time.time() - started
clock = time.time()
import onnxruntime, tokenizers
parts["imports: engine"] = time.time() - clock

def timed(part, function):
    def wrapper(*args, **kwargs):
        clock = time.time()
        try:
            return function(*args, **kwargs)
        finally:
            parts[part] = parts.get(part, 0.0) + time.time() - clock
    return wrapper

from textgen.backends import onnx_backend
from concurrent.futures import Executor, Future
class OneAfterAnother(Executor):  # the tokenizer read where the load submits it, not beside
    def __init__(self, *args, **kwargs):
        pass
    def submit(self, function, /, *args, **kwargs):
        future = Future()
        future.set_result(function(*args, **kwargs))
        return future
if hasattr(onnx_backend, "ThreadPoolExecutor"):  # the checkouts that read it beside (22e50a6..)
    onnx_backend.ThreadPoolExecutor = OneAfterAnother
from textgen.store.local import LocalModelStore
LocalModelStore.fetch = timed("store", LocalModelStore.fetch)
if "textgen.store.s3" in sys.modules:
    from textgen.store.s3 import S3ModelStore
    fetch = S3ModelStore.fetch
    def fetch_counted(*args, **kwargs):
        fetched = fetch(*args, **kwargs)
        parts["downloaded_bytes"] = fetched.downloaded_bytes
        return fetched
    S3ModelStore.fetch = timed("store", fetch_counted)
onnx_backend.flipped_graph = timed("weights", onnx_backend.flipped_graph)
onnx_backend.ort.InferenceSession = timed("session", onnx_backend.ort.InferenceSession)
onnx_backend.ModelTokenizer = timed("tokenizer", onnx_backend.ModelTokenizer)
event = json.loads(open(sys.argv[1]).read())
clock = time.time()
response = module.handler(event, LocalLambdaContext(remaining_ms=60_000))
invocation = time.time() - clock
assert response["statusCode"] == 200, response["body"]
loading = sum(parts.get(p, 0.0) for p in ("store", "weights", "session", "tokenizer"))
parts["request to first token"] = invocation - loading
print(json.dumps({"started": started, "first_token": time.time(), "parts": parts}))
"""

# The "ours, timeline" system of the docstring. Nothing is imported ahead of the handler: the S3
# store, onnxruntime and the tokenizer are wrapped as they are first imported.
_OURS_TIMELINE = """
import time
started = time.time()
import importlib.abc, importlib.util, json, sys, threading
marks = {}
def mark(name):
    marks.setdefault(name, time.time())
def wrap(cls, method, name):
    original = getattr(cls, method)
    def timed(self, *args, **kwargs):
        mark(name + " starts")
        try:
            return original(self, *args, **kwargs)
        finally:
            mark(name + " ends")
    setattr(cls, method, timed)
WRAPPED = {"onnxruntime": ("InferenceSession", "__init__", "session"),
           "textgen.backends.tokenizer": ("ModelTokenizer", "__init__", "tokenizer"),
           "textgen.store.s3": ("S3ModelStore", "fetch", "fetch from S3")}
class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in WRAPPED:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        execute = spec.loader.exec_module
        def exec_module(module):
            mark(name + " import starts")
            execute(module)
            mark(name + " import ends")
            cls, method, part = WRAPPED[name]
            wrap(getattr(module, cls), method, part)
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Hook())
start_thread = threading.Thread.start
def start(self):
    mark("loading thread starts")
    start_thread(self)
threading.Thread.start = start
import handlers.lambda_function as module
threading.Thread.start = start_thread
mark("handler imported")
from handlers.lambda_context import LocalLambdaContext
event = json.loads(open(sys.argv[1]).read())
response = module.handler(event, LocalLambdaContext(remaining_ms=60_000))
assert response["statusCode"] == 200, response["body"]
first_token = time.time()
import glob, os, tempfile
import onnxruntime as ort
graph = sys.argv[2] or glob.glob(os.path.join(os.environ["MODEL_CACHE_DIR"], "*", "*", "onnx",
                                              "model.onnx"))[0]  # from S3: the fetched copy
from textgen.backends.onnx_backend import session_options
from textgen.settings import get_settings
def session(graph, **config):
    options = session_options(get_settings())
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for key, value in config.items():
        if key == "optimized_model_filepath":
            options.optimized_model_filepath = value
        else:
            options.add_session_config_entry(key, value)
    clock = time.time()
    ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    return time.time() - clock
alone = {"session alone": session(graph)}
alone["session alone, prepacking off"] = session(graph, **{"session.disable_prepacking": "1"})
with tempfile.TemporaryDirectory() as folder:  # ONNX Runtime's own packed layout, saved, mapped
    packed = os.path.join(folder, "model.onnx")
    session(graph, optimized_model_filepath=packed, **{
        "session.optimized_model_external_initializers_file_name": "model.onnx.data",
        "session.optimized_model_external_initializers_min_size_in_bytes": "65536",
        "session.save_external_prepacked_constant_initializers": "1"})
    alone["session alone, packed ahead"] = session(packed)
print(json.dumps({"started": started, "first_token": first_token, "timeline": marks,
                  "alone": alone}))
"""

_LLAMA_CPP = """
import json, sys, time
started = time.time()
import llama_cpp
imported = time.time()
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=512, n_batch=512, n_threads=int(sys.argv[3]),
                      n_threads_batch=int(sys.argv[3]), verbose=False)
loaded = time.time()
tokens = llm.tokenize(sys.argv[2].encode(), add_bos=True)
token = next(llm.generate(tokens, top_k=1, temp=0.0))
text = llm.detokenize([token])
first_token = time.time()
print(json.dumps({"started": started, "first_token": first_token, "parts": {
    "imports": imported - started, "load": loaded - imported, "first token": first_token - loaded,
}}))
"""


def event_file(work: Path, model: str) -> Path:
    """The SAM CLI's HTTP API event, pointed at the model's route with the prompt."""
    event = json.loads(EVENT.read_text())
    route = ROUTES[model]
    event["rawPath"] = event["requestContext"]["http"]["path"] = route
    body = {"model_name": model, "prompts": [PROMPT], "max_tokens": 1}
    event["body"] = base64.b64encode(json.dumps(body).encode()).decode()
    event["isBase64Encoded"] = True
    path = work / f"event-{model}.json"
    path.write_text(json.dumps(event))
    return path


def store_of(folders: dict[str, Path], store: Path) -> Path:
    """A store holding each model folder's files and its ONNX export, linked, not copied."""
    for model, folder in folders.items():
        target = store / model
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for item in [*folder.iterdir(), *(folder / "onnx").iterdir()]:
            if item.is_file():
                destination = target / item.relative_to(folder)
                destination.parent.mkdir(exist_ok=True)
                try:
                    os.link(item, destination)
                except OSError:
                    shutil.copy2(item, destination)
    return store


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time a running process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def run(
    system: str,
    model: str,
    store: str,
    event: Path,
    gguf: Path,
    environ: dict[str, str],
    server_cpu: Callable[[], float] | None = None,
) -> Any:
    source = Path(environ.pop("SOURCE", REPO_ROOT))  # the checkout whose handler runs
    before = environ.pop("BEFORE", None)
    if system.endswith("_before"):  # one of ours (ours_before: "ours"), the older checkout's
        source, system = Path(str(before)), system.removesuffix("_before")
    environment = {
        **os.environ,
        "PYTHONPATH": f"{source}{os.pathsep}{source / 'layers'}",
        "MODEL_STORE": store,
        **environ,
    }
    environment.pop("PRELOAD_MODELS", None)
    if system in ("ours", "ours_timeline"):
        environment["PRELOAD_MODELS"] = model
    environment["PRELOAD_SOLE_MODEL"] = str(system == "ours_sole_model").lower()
    if system == "llama_cpp":
        command = ["-c", _LLAMA_CPP, str(gguf), PROMPT, environ["TORCH_THREADS"]]
    elif system == "ours_timeline":
        local = not store.startswith("s3://")  # from S3, the child finds the fetched copy
        graph = str(Path(store) / model / ONNX_EXPORT_DIR / ONNX_MODEL_FILE) if local else ""
        command = ["-c", _OURS_TIMELINE, str(event), graph]
    else:
        command = ["-c", _OURS_PARTS if system == "ours_parts" else _OURS, str(event)]
    cpu_before, server_before = children_cpu_seconds(), server_cpu() if server_cpu else 0.0
    spawned = time.time()
    done = subprocess.run(
        [sys.executable, *command], env=environment, capture_output=True, text=True, cwd=source
    )
    wall = time.time() - spawned
    if done.returncode:
        raise RuntimeError(f"{system} {model}: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    parts = {"interpreter": result["started"] - spawned, **result.get("parts", {})}
    # A timeline's moments, as seconds since the process was spawned.
    parts.update({name: moment - spawned for name, moment in result.get("timeline", {}).items()})
    parts.update(result.get("alone", {}))
    # The whole process (its exit included, so a little more than to the first token).
    cpu = {"process_cpu_s": children_cpu_seconds() - cpu_before}
    if server_cpu:
        cpu["server_cpu_s"] = server_cpu() - server_before
    cpu["cores_busy"] = sum(cpu.values()) / wall
    return {"start_to_first_token_s": result["first_token"] - spawned, "parts": parts, **cpu}


def applies(system: str, model: str) -> bool:
    return system != "llama_cpp" or (model == "smollm2-135m" and llama_cpp_peer.available())


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    parts = {key: statistics.median(r["parts"][key] for r in runs) for key in runs[0]["parts"]}
    figures = {key: statistics.median(r[key] for r in runs) for key in runs[0] if key != "parts"}
    return {**figures, "parts": parts, "runs": len(runs)}


@contextmanager
def s3_store(
    folders: dict[str, Path], work: Path
) -> Iterator[tuple[str, dict[str, str], Callable[[], float]]]:
    """The models published to moto's S3 server on loopback: the store's URI, the environment
    that reaches it, and the CPU seconds the server has used so far."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    from tests.support.s3_server import moto_process
    from textgen.store.publish import publish

    environ = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(environ)
    with moto_process() as server:
        url = environ["AWS_ENDPOINT_URL_S3"] = server.url
        client = boto3.client("s3", endpoint_url=url)
        client.create_bucket(Bucket="bench-models")
        for model in folders:
            source = work / "first-token-store" / model
            publish(source, f"s3://bench-models/models/{model}", client, TransferConfig())
        yield "s3://bench-models/models", environ, lambda: process_cpu_seconds(server.process.pid)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--store", choices=("local", "s3"), default="local")
    parser.add_argument("--s3-part-size-mb", type=int, default=256)
    parser.add_argument("--systems", help="comma-separated, of " + ", ".join(SYSTEMS))
    parser.add_argument(
        "--source",
        type=Path,
        default=REPO_ROOT,
        help="a checkout whose handler runs (an older commit's, `git worktree add`), with its own "
        "export of the models: give it a --work folder of its own",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="an older checkout whose preloaded cold start (ours_before; SYSTEM_before for any "
        "of ours) runs interleaved with this one's, on the same store (its code must read this "
        "checkout's export format)",
    )
    add_storage_options(parser)
    args = parser.parse_args()

    systems: tuple[str, ...] = SYSTEMS if args.store == "local" else ("ours", "ours_parts")
    systems = tuple(args.systems.split(",")) if args.systems else systems
    if args.before and "ours_before" not in systems:
        systems += ("ours_before",)
    if any(system.endswith("_before") for system in systems) and not args.before:
        parser.error("the systems of the older checkout (ours_before, ...) need --before")
    if args.store == "s3" and "ours_sole_model" in systems:
        parser.error("ours_sole_model runs on a local store only")
    for checkout in filter(None, (args.source, args.before)):
        compile_checkout(checkout)
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        work = args.work or Path(scratch)
        folders = prepare(work, args.cache)
        if args.source != REPO_ROOT:  # its own export, in the format it reads
            for folder in folders.values():
                export = [sys.executable, "-m", "handlers.cli", "export-onnx", str(folder)]
                older = {
                    **os.environ,
                    "PYTHONPATH": f"{args.source}{os.pathsep}{args.source}/layers",
                }
                subprocess.run(export, check=True, cwd=args.source, env=older)
        store = str(store_of(folders, work / "first-token-store"))
        # Each model alone in a store of its own, for "ours_sole_model".
        sole = {m: store_of({m: f}, work / "first-token-sole" / m) for m, f in folders.items()}
        environ = {"TORCH_THREADS": str(args.threads), "SOURCE": str(args.source)}
        if args.before:
            environ["BEFORE"] = str(args.before)
        server_cpu = None
        if args.store == "s3":
            store, reach, server_cpu = stack.enter_context(s3_store(folders, work))
            # One GET per file: moto answers a ranged GET by reading the whole object, so
            # against it every extra part costs a full read (real S3 serves ranges on their own).
            environ.update(reach, S3_PART_SIZE_MB=str(args.s3_part_size_mb))
        events = {model: event_file(work, model) for model in folders}
        gguf = gguf_path(folders["smollm2-135m"], "Q8_0")
        runs: dict[str, list[dict[str, Any]]] = {}
        for round_index in range(args.rounds):
            shift = round_index % len(systems)
            order = systems[shift:] + systems[:shift]
            for model in folders:
                for system in (s for s in order if applies(s, model)):
                    key = f"{model}/{system}"
                    cache = {"MODEL_CACHE_DIR": str(Path(scratch) / f"cache-{key}-{round_index}")}
                    where = str(sole[model]) if system == "ours_sole_model" else store
                    found = run(
                        system, model, where, events[model], gguf, {**environ, **cache}, server_cpu
                    )
                    runs.setdefault(key, []).append(found)
                    shutil.rmtree(cache["MODEL_CACHE_DIR"], ignore_errors=True)
                    print(key, json.dumps(found), file=sys.stderr, flush=True)

    figures: dict[str, Any] = {
        "cpu": cpu_description(),
        "threads": args.threads,
        "rounds": args.rounds,
        "store": args.store,
        "source": "this checkout" if args.source == REPO_ROOT else "--source (an older commit)",
        "prompt": PROMPT,
        "systems": {key: medians(values) for key, values in runs.items()},
    }
    peer = figures["systems"].get("smollm2-135m/llama_cpp")
    for key, row in figures["systems"].items():
        if peer:
            seconds = row["start_to_first_token_s"]
            row["ratio_to_llama_cpp"] = seconds / peer["start_to_first_token_s"]
        parts = figures["systems"].get(key.replace("/ours", "/ours_parts"))
        if args.store == "s3" and key.endswith("/ours") and parts:
            one_after_another = sum(v for k, v in parts["parts"].items() if k != "downloaded_bytes")
            row["sum_of_parts_s"] = one_after_another
            row["ratio_to_sum_of_parts"] = row["start_to_first_token_s"] / one_after_another
            downloaded = parts["parts"]["downloaded_bytes"]
            row["moto_mb_per_s"] = downloaded / 1e6 / parts["parts"]["store"]
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
