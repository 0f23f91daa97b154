"""HTTP receivers on loopback for the outbound tests: they record what arrives and answer from
a script, in the test's own event loop.

    async with receiving(answer(500), answer(200, b"ok")) as receiver:
        ... POST to receiver.url("/hook") ...
    assert [r.path for r in receiver.requests] == ["/hook", "/hook"]

Answers are taken one per request; the last one keeps answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    base_url: str
    requests: list[Received] = field(default_factory=list)

    def url(self, path: str = "/hook") -> str:
        return f"{self.base_url}{path}"


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
    async def respond(_: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers=headers)

    return respond


def redirect(location: str, status: int = 302) -> Answer:
    return answer(status, headers={"Location": location})


def slow(seconds: float) -> Answer:
    """Answer 200, but only after ``seconds``."""

    async def respond(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(status=200)

    return respond


def endless(chunk: bytes = b"x" * 65536) -> Answer:
    """200 with a body that never ends, until the client hangs up."""

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        try:
            while True:
                await response.write(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading and closed the connection
        return response

    return respond


@asynccontextmanager
async def receiving(*answers: Answer, host: str = "127.0.0.1") -> AsyncIterator[Receiver]:
    script = list(answers) or [answer(200)]
    receiver: Receiver

    async def handle(request: web.Request) -> web.StreamResponse:
        receiver.requests.append(
            Received(
                request.method,
                request.path,
                {k.lower(): v for k, v in request.headers.items()},
                await request.read(),
            )
        )
        respond = script.pop(0) if len(script) > 1 else script[0]
        return await respond(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host=host)
    await server.start_server()
    receiver = Receiver(str(server.make_url("")).rstrip("/"))
    try:
        yield receiver
    finally:
        await server.close()
