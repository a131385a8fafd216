"""Cold start from S3: the service's breakdown against "import + raw transfer + load".

A GPT-2 124M-architecture model (random weights, real vocabulary, ~500 MB in float32) is published
to moto's S3 server on loopback. Each measurement runs in a fresh process with an empty cache:

- service: import the engine, fetch through the S3 store (several files at once, each as concurrent
  ranged GETs, sha256 computed while the bytes stream in, atomic rename), load, first generation;
  once with the default part size and once with parts larger than any file (one GET per file);
- baseline: the same imports, a plain single-stream `boto3 download_file` of the same files, load,
  first generation, with no verification.

It prints both breakdowns (median of the runs) and the service's overhead over the baseline's
import + transfer + load. Reproduce with:

    python bench/cold_start.py [--runs 3]

moto serves a ranged GET by reading the whole object, so against moto each extra part costs a
full read of the object; real S3 does not, and there parallel ranged GETs are what make a cold
start fast. The "one GET per file" figure is the one that isolates the service's own overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig

from textgen.demo.store import build_gpt2
from textgen.store.publish import publish

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks, as bench.*
from bench.bytecode import compile_checkout
from bench.report import report

BUCKET = "bench-models"
MODEL = "gpt2-124m"
REPO = Path(__file__).resolve().parents[1]

_SERVICE = """
import json, sys, time
started = time.perf_counter()
from textgen.families import Family, Framework
from textgen.service import GenerationRequest, GenerationService
from textgen.settings import Settings
from textgen.store.disk_cache import DiskModelCache
from textgen.store.s3 import S3ModelStore, s3_client_for, transfer_config_for
import torch, transformers  # what loading needs, timed as import like the baseline's
imported = time.perf_counter()
uri, cache_dir, model = sys.argv[1:]
settings = Settings(model_store=uri, model_cache_dir=cache_dir)
cache = DiskModelCache(settings.model_cache_dir, settings.model_cache_max_bytes)
store = S3ModelStore(uri, s3_client_for(settings), cache, transfer_config_for(settings))
service = GenerationService(settings, store)
fetched_model = store.fetch(model)
fetched = time.perf_counter()
service.load(model, Framework.PYTORCH)
loaded = time.perf_counter()
service.generate(GenerationRequest(model, ["Hello"], Family.GPT2, max_tokens=8))
generated = time.perf_counter()
print(json.dumps({
    "import": imported - started,
    "fetch_wall": fetched - imported,
    "load": loaded - fetched,
    "first_generation": generated - loaded,
    "bytes": fetched_model.downloaded_bytes,
}))
"""

_BASELINE = """
import json, os, sys, time
started = time.perf_counter()
import boto3, torch, transformers
from boto3.s3.transfer import TransferConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
imported = time.perf_counter()
bucket, prefix, target, endpoint = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint)
single = TransferConfig(use_threads=False, multipart_threshold=1 << 40)
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
size = 0
for key in keys:
    if key.endswith("manifest.json"):
        continue
    path = f"{target}/{key[len(prefix):]}"
    s3.download_file(bucket, key, path, Config=single)
    size += os.path.getsize(path)
fetched = time.perf_counter()
tokenizer = AutoTokenizer.from_pretrained(target)
model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
loaded = time.perf_counter()
with torch.inference_mode():
    model.generate(**tokenizer(["Hello"], return_tensors="pt"), max_new_tokens=8, do_sample=False)
generated = time.perf_counter()
print(json.dumps({
    "import": imported - started, "transfer": fetched - imported, "load": loaded - fetched,
    "first_generation": generated - loaded, "bytes": size,
}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_json(args: list[str], env: dict[str, str]) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-c", *args], env=env, cwd=REPO, capture_output=True, text=True
    )
    if output.returncode != 0:
        raise RuntimeError(output.stderr)
    result: dict[str, float] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    compile_checkout(REPO)

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
        "PYTHONPATH": os.pathsep.join([str(REPO / "layers"), str(REPO)]),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3)
        os.environ.update({k: env[k] for k in env if k.startswith("AWS_")})
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as work:
            model_dir = build_gpt2(Path(work) / MODEL)
            publish(model_dir, f"s3://{BUCKET}/models/{MODEL}", s3, TransferConfig())
            variants = {"default parts": {}, "one GET per file": {"S3_PART_SIZE_MB": "4096"}}
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in [*variants, "baseline"]}
            for run in range(args.runs):
                for name, extra in variants.items():
                    cache = Path(work) / f"cache-{run}-{len(runs[name])}-{extra and 'one'}"
                    runs[name].append(
                        run_json(
                            [_SERVICE, f"s3://{BUCKET}/models", str(cache), MODEL],
                            {**env, **extra},
                        )
                    )
                target = Path(work) / f"plain-{run}"
                target.mkdir()
                runs["baseline"].append(
                    run_json([_BASELINE, BUCKET, f"models/{MODEL}/", str(target), endpoint], env)
                )
    finally:
        server.terminate()
        server.wait()

    baseline = median_of(runs["baseline"])
    baseline_total = baseline["import"] + baseline["transfer"] + baseline["load"]
    figures: dict[str, object] = {"runs": args.runs, "baseline_single_stream": baseline}
    print(f"model {baseline['bytes'] / 1e6:.0f} MB, median of {args.runs} cold processes each")
    print(
        f"{'baseline':>17}: import {baseline['import']:.2f}s  single-stream transfer "
        f"{baseline['transfer']:.2f}s  load {baseline['load']:.2f}s  "
        f"first generation {baseline['first_generation']:.2f}s  "
        f"| import+transfer+load {baseline_total:.2f}s"
    )
    for name in variants:
        service = median_of(runs[name])
        total = service["import"] + service["fetch_wall"] + service["load"]
        figures[name] = {**service, "import_fetch_load_s": total, "ratio": total / baseline_total}
        print(
            f"{name:>17}: import {service['import']:.2f}s  fetch+verify "
            f"{service['fetch_wall']:.2f}s  load {service['load']:.2f}s  first generation "
            f"{service['first_generation']:.2f}s  | import+fetch+load {total:.2f}s "
            f"= {total / baseline_total:.2f}x baseline"
        )
    report(figures, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
