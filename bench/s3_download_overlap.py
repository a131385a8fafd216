"""A model's download from S3 while the process computes in Python: the store's fetch (boto3's
transfer manager, as textgen.store.s3 fetches) against AWS's Common Runtime (awscrt: native
threads, no boto3), alone, beside the handler's import, and beside a thread spinning in Python.

Each measurement is a fresh process, rounds interleaved, against moto's S3 server on loopback (the
models published as `textgen publish` publishes them). A process downloads the files the ONNX
runtime reads (SmolLM2-135M's int8 export and its tokenizer, verified by sha256), one GET a file
(moto reads the whole object for every range):

- imports: only `import handlers.lambda_function` (MODEL_STORE the S3 store, nothing preloaded);
- store_*: the store's own fetch (S3ModelStore.fetch: download_fileobj into a hashing writer,
  files in parallel; the settings' and boto3's imports and the client included);
- crt_*: the same files through awscrt's S3 client, four at a time, written to disk by its native
  threads, then hashed in large reads, which let go of the GIL (its import and client included;
  this is how the store read in commit 7e2d1c1, which was measured and not kept);
- *_alone: the download only; *_beside: on a thread while the main thread imports the handler;
  *_spinning: on a thread while another computes in Python without pause (the worst case for a
  transfer that needs the GIL for every chunk; the client is made first, so that only the
  transfer is timed; the spinning stops with the download).

Reported: medians of the download's own time, the imports', and each process's wall time, and
per transfer the ratio of "beside" to "imports + alone" (1.0x: no overlap at all) and of
"spinning" to "alone". moto's own throughput and CPU bound both transfers here; real S3's are not
measurable from this machine. Needs awscrt (`pip install awscrt`, not in the project's install).
Reproduce with:

    python bench/s3_download_overlap.py [--rounds 5] [--work DIR] [--output bench/results/....json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.arguments import add_storage_options  # noqa: E402
from bench.bytecode import compile_checkout  # noqa: E402
from bench.cpu_decoding import cpu_description, prepare  # noqa: E402
from bench.first_token import s3_store, store_of  # noqa: E402
from bench.report import report  # noqa: E402

MODEL = "smollm2-135m"
SYSTEMS = (
    "imports",
    "store_alone",
    "store_beside",
    "store_spinning",
    "crt_alone",
    "crt_beside",
    "crt_spinning",
)

_CHILD = r"""
import hashlib, json, os, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
started = time.perf_counter()
system, uri, model, files = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
marks = {}
downloaded = threading.Event()

def store():
    from textgen.settings import get_settings
    from textgen.store import open_store
    opened = open_store(uri, get_settings())
    return lambda: opened.fetch(model, files)

def crt():
    from awscrt.auth import AwsCredentialsProvider
    from awscrt.http import HttpHeaders, HttpRequest
    from awscrt.io import ClientBootstrap, DefaultHostResolver, EventLoopGroup
    from awscrt.s3 import S3Client, S3RequestTlsMode, S3RequestType
    from awscrt.s3 import create_default_s3_signing_config
    events = EventLoopGroup()
    bootstrap = ClientBootstrap(events, DefaultHostResolver(events))
    region = os.environ["AWS_DEFAULT_REGION"]
    signing = create_default_s3_signing_config(
        region=region, credential_provider=AwsCredentialsProvider.new_default_chain(bootstrap))
    client = S3Client(bootstrap=bootstrap, region=region, signing_config=signing,
                      tls_mode=S3RequestTlsMode.DISABLED, part_size=256 << 20)
    host = os.environ["AWS_ENDPOINT_URL_S3"].split("//", 1)[1]  # moto: path style, no TLS
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    folder = os.environ["MODEL_CACHE_DIR"]
    os.makedirs(folder)

    def fetch(path):
        target = os.path.join(folder, path.replace("/", "_"))
        request = HttpRequest("GET", f"/{bucket}/{prefix}/{model}/{path}",
                              HttpHeaders([("Host", host)]))
        client.make_request(type=S3RequestType.GET_OBJECT, request=request,
                            recv_filepath=target).finished_future.result()
        digest = hashlib.sha256()
        with open(target, "rb") as handle:
            while chunk := handle.read(8 << 20):
                digest.update(chunk)

    def fetch_all():
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(fetch, sorted(files, key=lambda p: -os.path.getsize(os.path.join(
                os.environ["PUBLISHED"], p)))))

    return fetch_all

# Spinning, the client is made (its modules imported) first: what is timed is the transfer alone.
prepare = crt if system.startswith("crt") else store
prepared = prepare() if system.endswith("_spinning") else None

def download():
    clock = time.perf_counter()
    (prepared or prepare())()
    marks["download"] = time.perf_counter() - clock
    downloaded.set()

def imports():
    clock = time.perf_counter()
    import handlers.lambda_function  # noqa: F401
    marks["imports"] = time.perf_counter() - clock

def spin():
    while not downloaded.is_set():
        sum(range(1000))

if system == "imports":
    imports()
elif system.endswith("_alone"):
    download()
else:
    thread = threading.Thread(target=download)
    thread.start()
    imports() if system.endswith("_beside") else spin()
    thread.join()
marks["wall"] = time.perf_counter() - started
print(json.dumps(marks))
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    add_storage_options(parser)
    args = parser.parse_args()
    compile_checkout(REPO_ROOT)

    from textgen.model_files import files_for_runtime, folder_files

    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        folders = prepare(work, args.cache)
        published = store_of(folders, work / "first-token-store") / MODEL
        files = files_for_runtime("onnx", folder_files(published))
        with s3_store({MODEL: folders[MODEL]}, work) as (uri, environ, _):
            environment = {
                **os.environ,
                **environ,
                "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'layers'}",
                "MODEL_STORE": uri,
                "S3_PART_SIZE_MB": "256",  # one GET a file, as bench/first_token.py fetches
                "PUBLISHED": str(published),  # the files' sizes: the largest fetched first
            }
            environment.pop("PRELOAD_MODELS", None)
            runs: dict[str, list[dict[str, float]]] = {system: [] for system in SYSTEMS}
            for round_index in range(args.rounds):
                shift = round_index % len(SYSTEMS)
                for system in SYSTEMS[shift:] + SYSTEMS[:shift]:
                    cache = Path(scratch) / f"cache-{system}-{round_index}"
                    command = [sys.executable, "-c", _CHILD, system, uri, MODEL, json.dumps(files)]
                    done = subprocess.run(
                        command,
                        env={**environment, "MODEL_CACHE_DIR": str(cache)},
                        capture_output=True,
                        text=True,
                    )
                    if done.returncode != 0:
                        raise RuntimeError(f"{system} failed:\n{done.stderr[-3000:]}")
                    shutil.rmtree(cache, ignore_errors=True)
                    runs[system].append(json.loads(done.stdout.strip().splitlines()[-1]))
                    print(system, runs[system][-1], file=sys.stderr, flush=True)
    figures: dict[str, Any] = {
        "cpu": cpu_description(),
        "rounds": args.rounds,
        "model": MODEL,
        "downloaded_mb": sum((published / f).stat().st_size for f in files) / 1e6,
        "systems": {
            system: {key: statistics.median(r[key] for r in values) for key in values[0]}
            for system, values in runs.items()
        },
    }
    medians = figures["systems"]
    for transfer in ("store", "crt"):
        parts = medians["imports"]["imports"] + medians[f"{transfer}_alone"]["download"]
        figures[f"{transfer}_beside_over_parts"] = medians[f"{transfer}_beside"]["wall"] / parts
        alone = medians[f"{transfer}_alone"]["download"]
        figures[f"{transfer}_spinning_over_alone"] = (
            medians[f"{transfer}_spinning"]["download"] / alone
        )
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
