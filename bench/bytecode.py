"""A checkout's own modules compiled to bytecode before a benchmark times fresh processes.

The images ship bytecode (pip compiles what it installs, the project included), so a cold start
never compiles a module from source. A checkout only has it where something wrote it: with
PYTHONDONTWRITEBYTECODE set (as in the images, and on some machines), or in a new `git worktree`,
each process compiles every one of the project's modules again, about 0.05 s of the handler's
import of 0.3 s. Timed so, a checkout without bytecode looked 1.16x slower than the same code with
it (docs/performance.md), so every side of a start-up benchmark is compiled first, by the
interpreter that runs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_FOLDERS = ("handlers", "layers", "bench")


def compile_checkout(checkout: Path, python: str = sys.executable) -> None:
    """Write the bytecode of the checkout's modules for that interpreter (compileall writes it
    whatever PYTHONDONTWRITEBYTECODE says); up-to-date files are left as they are."""
    folders = [name for name in PROJECT_FOLDERS if (checkout / name).is_dir()]
    subprocess.run(
        [python, "-m", "compileall", "-q", *folders],
        cwd=checkout,
        check=True,
        stdout=subprocess.DEVNULL,
    )
