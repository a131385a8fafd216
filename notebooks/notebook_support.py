"""What both notebooks need more than once: the `textgen` command, servers on loopback (moto's S3,
the service), the Lambda handler run on a SAM-generated event, timed requests, figures, and the
perplexity of a model on text.

Notebook plumbing, not product code: the product is the `textgen` package and its command line,
which these helpers only call.
"""

from __future__ import annotations

import atexit
import base64
import json
import math
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import matplotlib
from tqdm import TqdmWarning

from handlers.lambda_context import LocalLambdaContext

# Without ipywidgets, tqdm's notebook bars fall back to text, and say so once per import: noise.
warnings.filterwarnings("ignore", category=TqdmWarning)

matplotlib.use("Agg")  # headless: figures are saved as PNG files, then displayed

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

REPO_ROOT = Path(__file__).resolve().parents[1]
EVENTS = REPO_ROOT / "tests" / "events"  # made by the SAM CLI (tests/events/generate.sh)
MOTO = "moto"  # the `s3_endpoint` parameter that starts moto's S3 server on loopback
REGION = "us-east-1"


def textgen(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run the `textgen` command installed beside this Python (in `cwd`); print and return what
    it says on stdout (an error carries everything it said)."""
    command = [str(Path(sys.executable).with_name("textgen")), *args]
    result = subprocess.run(
        command,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise RuntimeError(f"textgen {' '.join(args)} failed ({result.returncode}):\n{output}")
    print(result.stdout.strip())  # its results; stderr has progress and libraries' logs
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A server process on loopback, its output in a log file; stopped at exit at the latest."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    command: Sequence[str],
    port: int,
    log: Path,
    env: Mapping[str, str] | None = None,
    health_path: str = "/health",
    timeout_s: float = 600,
) -> Server:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(command), env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    atexit.register(server.stop)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(server.url + health_path, timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(f"no answer on {server.url} after {timeout_s} s:\n{log.read_text()}")
        time.sleep(0.5)


def s3_environment(
    s3_endpoint: str | None, output_dir: Path
) -> tuple[dict[str, str], Server | None]:
    """The environment the AWS SDK (and so `textgen`) needs for the chosen S3, and moto's server
    when `s3_endpoint` is MOTO. None means real S3 with your own credentials and region."""
    if s3_endpoint is None:
        return {}, None
    server = None
    if s3_endpoint == MOTO:
        port = free_port()
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        server = start_server(command, port, output_dir / "moto.log", health_path="/moto-api/")
        s3_endpoint = server.url
    env = {"AWS_ENDPOINT_URL_S3": s3_endpoint}
    if server is not None:  # moto takes any credentials; these reach no AWS account
        env |= {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            # One request per file: moto reads a whole object for each ranged GET, so 16 MB parts
            # of a 500 MB file cost it 30 times the file (413 MB in 16 MB parts: 4.0 s; in single
            # GETs: 0.6 s). S3 itself serves parts in parallel: keep the default there.
            "S3_PART_SIZE_MB": "1024",
        }
    return env, server


def start_service(store: str, output_dir: Path, env: Mapping[str, str] | None = None) -> Server:
    """`textgen serve` on a free loopback port, serving `store` (a folder or s3://...)."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("textgen")), "serve", "--store", store]
    command += ["--port", str(port), "--log-level", "warning"]
    return start_server(command, port, output_dir / f"service-{port}.log", env)


def post(url: str, path: str, body: Mapping[str, Any], timeout_s: float = 600) -> dict[str, Any]:
    """POST a JSON body; the JSON answer, or an error carrying the service's own message."""
    response = httpx.post(url + path, json=dict(body), timeout=timeout_s)
    if response.status_code != 200:
        raise RuntimeError(f"{path} answered {response.status_code}: {response.text}")
    answer: dict[str, Any] = response.json()
    return answer


def tokens_per_second(url: str, path: str, request: Mapping[str, Any], repeats: int = 2) -> float:
    """Generated tokens per second of a request, once it is warm: the first run loads the model
    (and, for "tf", compiles the request's shape), the best of the next `repeats` counts."""
    post(url, path, request)
    runs = [post(url, path, request)["throughput"]["tokens_per_second"] for _ in range(repeats)]
    return float(max(runs))


def lambda_invocations(
    event_name: str, body: Mapping[str, Any], env: Mapping[str, str], invocations: int = 2
) -> list[dict[str, Any]]:
    """A fresh process as a new Lambda execution environment: it imports the handler (the init
    phase, timed) and handles `invocations` API Gateway events made by the SAM CLI, with `body`.
    Each record: init seconds (first only), wall seconds, status and the response body."""
    arguments = [event_name, json.dumps(dict(body)), str(invocations)]
    result = subprocess.run(
        [sys.executable, __file__, "invoke-lambda", *arguments],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the Lambda handler failed:\n{result.stderr[-3000:]}")
    records: list[dict[str, Any]] = json.loads(result.stdout.strip().splitlines()[-1])
    return records


def _invoke_lambda(event_name: str, body: str, invocations: int) -> None:
    started = time.perf_counter()
    import handlers.lambda_function as function  # the init phase: what Lambda runs once

    init_s = time.perf_counter() - started
    records = []
    for index in range(invocations):
        event = json.loads((EVENTS / f"{event_name}.json").read_text())
        # API Gateway hands a body over base64-encoded when the event says so (SAM's REST ones).
        encoded = event.get("isBase64Encoded")
        event["body"] = base64.b64encode(body.encode()).decode() if encoded else body
        started = time.perf_counter()
        response = function.handler(
            event, LocalLambdaContext(remaining_ms=900_000)
        )  # Lambda's longest
        records.append(
            {
                "invocation": "cold" if index == 0 else "warm",
                "init_seconds": init_s if index == 0 else 0.0,
                "wall_seconds": time.perf_counter() - started,
                "status": response["statusCode"],
                "body": json.loads(response["body"]),
            }
        )
    print(json.dumps(records))


def table(rows: Sequence[Mapping[str, Any]], digits: int = 3) -> None:
    """Display rows (dicts with the same keys) as a Markdown table."""
    from IPython.display import Markdown, display

    def cell(value: Any) -> str:
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(row[key]) for key in header) + " |" for row in rows]
    display(Markdown("\n".join(lines)))


def show(fig: Any, path: Path) -> Path:
    """Save a figure as a PNG file, and display it in the notebook."""
    from IPython.display import Image, display

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    display(Image(filename=str(path)))
    return path


def perplexity(model: Any, tokenizer: Any, texts: Sequence[str], window: int, limit: int) -> float:
    """exp of the mean next-token loss over the first `limit` tokens of `texts` (each text cut
    into windows of `window` tokens, scored independently)."""
    import torch

    ids = [tokenizer(text)["input_ids"] for text in texts]
    windows = [seq[start : start + window] for seq in ids for start in range(0, len(seq), window)]
    total_loss, total_tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for chunk in windows:
            if total_tokens >= limit or len(chunk) < 2:
                continue
            tokens = torch.tensor([chunk])
            loss = model(input_ids=tokens, labels=tokens).loss  # mean over len - 1 predictions
            total_loss += float(loss) * (len(chunk) - 1)
            total_tokens += len(chunk) - 1
    return math.exp(total_loss / total_tokens)


if __name__ == "__main__" and sys.argv[1:2] == ["invoke-lambda"]:
    _invoke_lambda(sys.argv[2], sys.argv[3], int(sys.argv[4]))
