"""A small emulator of the Lambda Runtime API, for running the real runtime interface client.

It implements what `awslambdaric` calls in these tests: next invocation, invocation response and
invocation error (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html).
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


@dataclass
class Outcome:
    kind: str  # "response" or "error"
    payload: Any


def body_of(outcome: Outcome) -> tuple[int, Any]:
    """Status and JSON body of an API Gateway response the handler returned."""
    assert outcome.kind == "response", outcome
    body = outcome.payload["body"]
    if outcome.payload.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return outcome.payload["statusCode"], json.loads(body)


def _trace_id() -> str:
    return f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0"


class RuntimeApiEmulator:
    def __init__(self, function_timeout_ms: int = 30_000) -> None:
        self.function_timeout_ms = function_timeout_ms
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._outcomes: dict[str, queue.Queue[Outcome]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RuntimeApiEmulator:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def invoke(self, event: Any, timeout: float = 120) -> Outcome:
        request_id = str(uuid.uuid4())
        self._outcomes[request_id] = queue.Queue()
        self._events.put((request_id, event))
        return self._outcomes[request_id].get(timeout=timeout)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._reply(404, {"errorMessage": "unknown path"})
                    return
                request_id, event = emulator._events.get()
                deadline = int(time.time() * 1000) + emulator.function_timeout_ms
                self._reply(
                    200,
                    event,
                    {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(deadline),
                        "Lambda-Runtime-Invoked-Function-Arn": (
                            "arn:aws:lambda:us-east-1:123456789012:function:textgen"
                        ),
                        "Lambda-Runtime-Trace-Id": _trace_id(),
                    },
                )

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                payload = json.loads(body) if body else None
                parts = self.path[len(PREFIX) :].strip("/").split("/")
                if (
                    len(parts) == 3
                    and parts[0] == "invocation"
                    and parts[2] in {"response", "error"}
                ):
                    emulator._outcomes[parts[1]].put(Outcome(parts[2], payload))
                else:
                    self._reply(404, {"errorMessage": "unknown path"})
                    return
                self._reply(202, {"status": "OK"})

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler
