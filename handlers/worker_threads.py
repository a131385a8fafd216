"""Blocking work (a model's load, a file's write, a long poll of SQS) off the event loop, on a
thread pool of the service's own.

Starlette's run_in_threadpool, which this replaces, imports anyio's asyncio backend on its first
call: about 20 ms on a Lambda cold start's first request, holding the GIL that the imports and the
model's load need (docs/performance.md). asyncio's default executor would have 6 threads on a
2-core machine, so a few requests waiting for a model's load would hold up every other model's;
this pool has anyio's default capacity, 40.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

Arguments = ParamSpec("Arguments")
Result = TypeVar("Result")

_POOL = ThreadPoolExecutor(max_workers=40, thread_name_prefix="textgen-worker")


async def in_worker_thread(
    function: Callable[Arguments, Result], *args: Arguments.args, **kwargs: Arguments.kwargs
) -> Result:
    """`function(*args, **kwargs)` on a worker thread, in the caller's context (its context
    variables), as asyncio.to_thread runs it."""
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_POOL, call)
