"""Take a request out of its model's line when its HTTP client goes away.

Listening for the disconnect costs a task, so it starts only when the request has to wait in
line (the first position report); requests that start at once, and cache hits, pay nothing.
Once a request has left the line it runs to the end even if the client leaves: the provider
call is paid for and its images are kept (and cached) for the next identical request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request

from imagegate.services.lanes import QueueWatch


async def _until_disconnect(request: Request, abandoned: asyncio.Event) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            abandoned.set()
            return


@asynccontextmanager
async def watching_client(request: Request) -> AsyncIterator[QueueWatch]:
    """A ``QueueWatch`` whose ``abandoned`` is set when the client disconnects while queued."""
    abandoned = asyncio.Event()
    listener: asyncio.Task[None] | None = None

    def listen(_position: int) -> None:
        nonlocal listener
        if listener is None:
            listener = asyncio.create_task(_until_disconnect(request, abandoned))

    watch = QueueWatch(on_position=listen, on_start=None, abandoned=abandoned)
    try:
        yield watch
    finally:
        if listener is not None:
            listener.cancel()
