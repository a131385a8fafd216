"""Why a cold start from S3 does not overlap its download with its imports: the download alone
and beside the handler's import, through the store's transfer (boto3's classic transfer manager,
as textgen.store.s3 fetches) and through AWS's Common Runtime (awscrt, native threads).

Each measurement is a fresh process, rounds interleaved, against moto's S3 server on loopback (the
models published as `textgen publish` publishes them). A process downloads the files the ONNX
runtime reads (SmolLM2-135M's int8 export and its tokenizer, verified by sha256):

- imports: only `import handlers.lambda_function` (MODEL_STORE the S3 store, nothing preloaded);
- classic alone / beside: the store's own fetch (S3ModelStore.fetch: download_fileobj into a
  hashing writer, files in parallel), alone, or on a thread while the main thread imports the
  handler;
- crt alone / beside: the same files through s3transfer's CRT transfer manager (written to disk by
  native threads, no Python per chunk), then hashed in large reads (hashlib lets go of the GIL).

Reported: medians of the download's own time, the imports', and each process's wall time, and
per transfer the ratio of "beside" to "imports + alone" (1.0x: no overlap at all). moto's own
throughput bounds both transfers here; real S3's is not measurable from this machine. Needs
awscrt (`pip install 'boto3[crt]'`, not in the project's install). Reproduce with:

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
from bench.cpu_decoding import cpu_description, prepare  # noqa: E402
from bench.first_token import s3_store, store_of  # noqa: E402
from bench.report import report  # noqa: E402

MODEL = "smollm2-135m"
SYSTEMS = ("imports", "classic_alone", "classic_beside", "crt_alone", "crt_beside")

_CHILD = r"""
import hashlib, json, os, sys, threading, time
started = time.perf_counter()
system, uri, model, files = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
marks = {}

def classic():
    from textgen.settings import get_settings
    from textgen.store import open_store
    open_store(uri, get_settings()).fetch(model, files)

def crt():
    import boto3, s3transfer.crt as crt_transfer
    from awscrt.auth import AwsCredentialsProvider
    session = boto3.session.Session()
    frozen = session.get_credentials().get_frozen_credentials()
    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    client = crt_transfer.create_s3_crt_client(
        session.region_name,
        AwsCredentialsProvider.new_static(frozen.access_key, frozen.secret_key, frozen.token),
        part_size=1 << 30,  # one GET a file: moto reads the whole object for each range
        use_ssl=endpoint.startswith("https"),
    )
    serializer = crt_transfer.BotocoreCRTRequestSerializer(
        session._session, {"endpoint_url": endpoint, "region_name": session.region_name}
    )
    manager = crt_transfer.CRTTransferManager(client, serializer)
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    folder = os.environ["MODEL_CACHE_DIR"]
    os.makedirs(folder)
    targets = [os.path.join(folder, path.replace("/", "_")) for path in files]
    transfers = [
        manager.download(bucket, f"{prefix}/{model}/{path}", target)
        for path, target in zip(files, targets)
    ]
    for transfer in transfers:
        transfer.result()
    for target in targets:
        digest = hashlib.sha256()
        with open(target, "rb") as handle:
            while chunk := handle.read(8 << 20):
                digest.update(chunk)
    manager.shutdown()

def download():
    clock = time.perf_counter()
    (crt if system.startswith("crt") else classic)()
    marks["download"] = time.perf_counter() - clock

def imports():
    clock = time.perf_counter()
    import handlers.lambda_function  # noqa: F401
    marks["imports"] = time.perf_counter() - clock

if system == "imports":
    imports()
elif system.endswith("_beside"):
    thread = threading.Thread(target=download)
    thread.start()
    imports()
    thread.join()
else:
    download()
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
                "S3_PART_SIZE_MB": "4096",  # one GET a file, as bench/first_token.py fetches
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
    for transfer in ("classic", "crt"):
        parts = medians["imports"]["imports"] + medians[f"{transfer}_alone"]["download"]
        figures[f"{transfer}_beside_over_parts"] = medians[f"{transfer}_beside"]["wall"] / parts
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
