"""Start the real service in a subprocess on loopback, and stop it again."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_server(
    command: Sequence[str],
    port: int,
    env: Mapping[str, str],
    timeout: float = 120,
    health_path: str = "/health",
) -> Iterator[str]:
    """Run `command` (which must listen on 127.0.0.1:port) until it answers; yield its URL."""
    with running_process(command, port, env, timeout, health_path) as server:
        yield server.url


@dataclass
class RunningProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@contextmanager
def running_process(
    command: Sequence[str],
    port: int,
    env: Mapping[str, str],
    timeout: float = 120,
    health_path: str = "/health",
) -> Iterator[RunningProcess]:
    """As running_server, yielding the process too (to signal it) and its output. The output goes
    to a file, not a pipe: a pipe nobody drains fills up and blocks a chatty server (moto logs
    every request) mid-test."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        list(command), cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log, stderr=log
    )
    server = RunningProcess(f"http://127.0.0.1:{port}", process, log)
    url = server.url
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.output()}")
            try:
                if httpx.get(f"{url}{health_path}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not answer on {url} within {timeout} s")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def python_module(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def console_script(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def run_textgen(*args: str, env: Mapping[str, str] | None = None) -> str:
    """Run the installed `textgen` command as a user would, which must succeed; its stdout."""
    done = subprocess.run(
        [console_script("textgen"), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"textgen {' '.join(args)}:\n{done.stderr[-3000:]}"
    return done.stdout
