"""Waiting for the engine without holding a thread, and giving up when the client does."""

from __future__ import annotations

import asyncio

from fastapi import Request

from handlers.errors import ClientDisconnected
from textgen.engine import SequenceOutput
from textgen.generation import Generation


async def until_finished(request: Request, generation: Generation) -> list[SequenceOutput]:
    """The generation's outputs; if the client disconnects first, its rows are cancelled."""
    finished = asyncio.ensure_future(generation.outputs())
    disconnected = asyncio.ensure_future(_disconnect(request))
    try:
        done, _ = await asyncio.wait({finished, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        if finished in done:
            return finished.result()
        generation.cancel()
        raise ClientDisconnected("the client disconnected before the answer was ready")
    finally:
        for task in (finished, disconnected):
            task.cancel()


async def _disconnect(request: Request) -> None:
    # The body is read already: the next message is the disconnect (uvicorn sends it when the
    # connection drops; Mangum and the test client only after the response).
    while (await request.receive())["type"] != "http.disconnect":
        pass
