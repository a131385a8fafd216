"""A real S3 API for the tests: moto's server on loopback, and a fault-injecting proxy before it."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from tests.support.servers import RunningProcess, free_port, python_module, running_process

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@contextmanager
def moto_process() -> Iterator[RunningProcess]:
    """moto's S3 server on a free loopback port, once it answers (its process too: what it used)."""
    port = free_port()
    command = python_module("moto.server", "-H", "127.0.0.1", "-p", str(port))
    with running_process(command, port, {}, health_path="/moto-api/") as server:
        yield server


@contextmanager
def moto_server() -> Iterator[str]:
    with moto_process() as server:
        yield server.url


@dataclass
class Fault:
    """What to do to the next `count` requests whose method and path match."""

    count: int
    method: str = "GET"
    path_contains: str = ""
    status: int | None = None  # answer with this status and an S3 error body
    error_code: str = "InternalError"
    drop_after: int | None = None  # send headers and this many body bytes, then hang up
    stall_seconds: float = 0.0  # before sending the body

    def matches(self, method: str, path: str) -> bool:
        return self.count > 0 and method == self.method and self.path_contains in path


@dataclass
class ProxyLog:
    requests: list[tuple[str, str]] = field(default_factory=list)
    body_bytes: Counter[str] = field(default_factory=Counter)  # per object key, GET bodies sent

    def gets(self, path_contains: str = "") -> list[str]:
        return [p for m, p in self.requests if m == "GET" and path_contains in p]


class FaultProxy:
    """Forwards every request to the upstream S3 server, except those a fault plan says to break."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.log = ProxyLog()
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def reset_log(self) -> None:
        with self._lock:
            self.log = ProxyLog()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.log.requests.append((method, path))
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    return fault
        return None

    def _count_body(self, path: str, size: int) -> None:
        with self._lock:
            self.log.body_bytes[unquote(urlsplit(path).path)] += size

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _relay(self) -> None:
                body = self._read_body()
                fault = proxy._take_fault(self.command, self.path)
                if fault and fault.status:
                    self._send_error(fault.status, fault.error_code)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                upstream.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                if self.command == "HEAD":  # a HEAD tells the object's size, with no body
                    self.send_header("Content-Length", response.getheader("Content-Length", "0"))
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if fault and fault.stall_seconds:
                    time.sleep(fault.stall_seconds)
                if fault and fault.drop_after is not None:
                    self.wfile.write(payload[: fault.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(payload)
                if self.command == "GET":
                    proxy._count_body(self.path, len(payload))

            def _read_body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().strip().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length", 0))
                return self.rfile.read(length) if length else None

            def _send_error(self, status: int, code: str) -> None:
                body = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                    f"<Message>injected by the test proxy</Message></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

        return Handler
