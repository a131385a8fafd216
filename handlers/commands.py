"""What each `textgen` command does (handlers/cli.py reads the command line and calls one):
each imports what it needs when it runs, so `textgen --help` loads none of it."""

from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path

from textgen.model_files import require_model_folder
from textgen.settings import Settings, default_model_store


def serve(args: argparse.Namespace) -> int:
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
            "this takes under a minute, once",
            file=sys.stderr,
        )

    store = build_demo_store(
        root, settings.download_cache_dir, on_fetch=fetching, export_cache=settings.export_cache_dir
    )
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


def demo_store(args: argparse.Namespace) -> int:
    settings = Settings()
    root = Path(args.directory or settings.model_store)
    complete = _ensure_demo_store(root, settings)
    print(root)
    return 0 if complete else 1


def import_gguf(args: argparse.Namespace) -> int:
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


def models(args: argparse.Namespace) -> int:
    from textgen.store import open_store

    settings = Settings()
    store = open_store(args.store or settings.model_store, settings)
    for model in store.list_models():
        print(f"{model.name}\t{model.family}\t{','.join(model.frameworks)}")
    return 0


def publish(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from textgen.manifest import build_manifest
    from textgen.store.publish import publish
    from textgen.store.s3 import s3_client_for, transfer_config_for

    settings = Settings()
    model_dir = require_model_folder(Path(args.model_dir))  # before the export and the bar
    if not args.no_onnx:  # a CPU serves the model on the fast path with no step of its own
        from textgen.convert.onnx_export import ensure_export

        if (export := ensure_export(model_dir, settings.export_cache_dir)) is not None:
            print(f"wrote the ONNX export (int8) to {export}", file=sys.stderr)
    total = build_manifest(model_dir).total_bytes
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


def run_batch(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from tqdm import tqdm

    from handlers.openai_api.batch import parse_batch, run_batch
    from handlers.openai_api.serving import OpenAIServing
    from textgen.service import GenerationService
    from textgen.staging import staged_file
    from textgen.store import open_store

    settings = Settings()
    with open(args.input, encoding="utf-8-sig") as lines:  # a byte order mark skipped
        # The whole file's shape checked before any runs; a body its endpoint refuses (a prompt
        # too long) is that line's error, as vLLM's run-batch has it.
        requests = parse_batch(lines)
    service = GenerationService(settings, open_store(settings.model_store, settings))
    serving = OpenAIServing(service)
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


def batch_worker(args: argparse.Namespace) -> int:
    import asyncio

    from handlers.batch_api.aws import sqs_client
    from handlers.batch_worker import poll

    asyncio.run(poll(Settings(), sqs_client(), max(args.chunks_at_once, 1), args.idle_exit))
    return 0


def export_tf(args: argparse.Namespace) -> int:
    from functools import partial

    from textgen.convert import tf_export
    from textgen.convert.export_cache import cached_export
    from textgen.model_files import TF_EXPORT_DIR

    cache = Settings().export_cache_dir
    model_dirs = [require_model_folder(Path(d)) for d in args.model_dirs]  # all, before any runs
    for model_dir in model_dirs:  # one process for all: TensorFlow starts once
        key = "" if cache is None else tf_export.export_key_of(model_dir)
        build = partial(tf_export.export_tf, model_dir)
        target, reused = cached_export(cache, model_dir, TF_EXPORT_DIR, key, build)
        print(f"{'reused' if reused else 'wrote'} the TensorFlow export to {target}")
    return 0


def export_onnx(args: argparse.Namespace) -> int:
    from textgen.convert.onnx_export import export_onnx

    model_dirs = [require_model_folder(Path(d)) for d in args.model_dirs]  # all, before any runs
    for model_dir in model_dirs:
        target = export_onnx(model_dir, precision=args.precision)
        print(f"wrote the ONNX export ({args.precision}) to {target}")
    return 0


def warm_up(args: argparse.Namespace) -> int:
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
