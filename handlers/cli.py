"""The `textgen` command line: serve the API, build the demo store, list a store's models."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from textgen.errors import TextgenError
from textgen.settings import Settings, default_model_store


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from handlers.factory import create_app

    overrides = {"model_store": args.store} if args.store else {}
    settings = Settings(**overrides)
    if settings.model_store == default_model_store():
        _ensure_demo_store(Path(settings.model_store))
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _ensure_demo_store(root: Path) -> None:
    from textgen.demo import build_demo_store

    built = build_demo_store(root)
    if built:
        print(f"built demo models in {root}: {', '.join(p.name for p in built)}", file=sys.stderr)


def _demo_store(args: argparse.Namespace) -> int:
    root = Path(args.directory or Settings().model_store)
    _ensure_demo_store(root)
    print(root)
    return 0


def _models(args: argparse.Namespace) -> int:
    from textgen.store import open_store

    store = open_store(args.store or Settings().model_store)
    for model in store.list_models():
        print(f"{model.name}\t{model.family}\t{','.join(model.frameworks)}")
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
        description="Build one tiny GPT-2 and one tiny LLaMA model (random weights, real GPT-2 "
        "vocabulary) into DIRECTORY; models already there are kept.",
    )
    demo.add_argument("directory", nargs="?", help="target folder (default: $MODEL_STORE)")
    demo.set_defaults(run=_demo_store)

    models = commands.add_parser(
        "models",
        help="list the models in a store",
        description="List a store's models: name, family and frameworks, tab-separated.",
    )
    models.add_argument("store", nargs="?", help="model store (default: $MODEL_STORE)")
    models.set_defaults(run=_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except TextgenError as exc:
        print(f"textgen: error: {exc.message}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
