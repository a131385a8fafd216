"""A graceful stop under uvicorn: on SIGTERM (or Ctrl-C) new requests get a 503 at once, while
running ones finish within SHUTDOWN_GRACE_S; then the engines stop.

uvicorn installs its own signal handlers before the app starts; this wraps them, so that the
service hears of the stop first and uvicorn then stops as it always does. On Lambda (Mangum, no
lifespan) none of this runs: the platform owns the process.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI

from handlers.later_routes import include_openai_routes
from textgen.service import GenerationService

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@asynccontextmanager
async def graceful_lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: GenerationService = app.state.service
    restore = _hear_stop_signals(service)
    include_openai_routes(app)  # a server serves every route from its start
    batch_api = app.state.batch_api
    await batch_api.start()  # batches run on this loop; a stopped one's are taken up again
    try:
        yield
    finally:
        await batch_api.stop()
        service.close(app.state.settings.shutdown_grace_s)
        restore()


def _hear_stop_signals(service: GenerationService) -> Any:
    # Signal handlers can only be set from the main thread (not under the test client).
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}

    def on_signal(sig: int, frame: FrameType | None) -> None:
        service.begin_shutdown()
        handler = previous[signal.Signals(sig)]
        if callable(handler):
            handler(sig, frame)
        elif handler == signal.SIG_DFL:
            signal.default_int_handler(sig, frame)

    for sig in _SIGNALS:
        signal.signal(sig, on_signal)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
