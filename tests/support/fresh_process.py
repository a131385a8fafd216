"""Code run in a fresh interpreter, from the checkout: what a process imports or compiles when
it starts with nothing loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.servers import REPO_ROOT

_GENERATE = """
import json, sys
from pathlib import Path
from textgen.backends import load_backend
from textgen.engine import Job
from textgen.families import Framework
from textgen.settings import Settings
model_dir = Path(sys.argv[1])
settings = Settings(model_store=str(model_dir.parent))
backend = load_backend(Framework(sys.argv[2]), model_dir, settings)
job = Job(["Hello there"], backend.encode(["Hello there"], 4), 4)
tokens = len(backend.engine.submit(job).result(120)[0].token_ids)
loaded = [m for m in json.loads(sys.argv[3]) if m in sys.modules]
print(json.dumps({"tokens": tokens, "loaded": loaded, "runtime": backend.engine.runtime}))
"""


def fresh_python(script: str, *args: str, env: Mapping[str, str] | None = None) -> Any:
    """Run `script` with `args` in a fresh interpreter; the JSON of the last line it prints."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def generate_in_fresh_process(
    model_dir: Path, framework: str, watched: tuple[str, ...]
) -> dict[str, Any]:
    """Load a model of the store for `framework` and generate 4 tokens, all in a fresh process:
    the tokens made, the runtime that made them, and which `watched` modules it imported."""
    report: dict[str, Any] = fresh_python(
        _GENERATE, str(model_dir), framework, json.dumps(list(watched))
    )
    return report
