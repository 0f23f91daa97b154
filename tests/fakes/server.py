"""Runs a fake provider (an ASGI app) on a free loopback port, with a call log and faults.

    fake = FakeServer(build_openai_fake(state)).start()
    state.faults.next(Fault.status(429, retry_after=1), Fault.reset())
    ... client calls fake.base_url ...
    assert len(state.calls) == 3
    fake.stop()

Faults are taken one per request, in order, from ``faults.next(...)``; ``faults.random(rate,
[...], seed)`` injects them at random after the queue is empty.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

FaultKind = Literal["latency", "hang", "reset", "status", "malformed", "safety"]


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """Answer normally, ``seconds`` late."""
        return cls("latency", seconds=seconds)

    @classmethod
    def hang(cls, seconds: float = 3600.0) -> Fault:
        """Never answer (within any sane client timeout)."""
        return cls("hang", seconds=seconds)

    @classmethod
    def reset(cls) -> Fault:
        """Start a response and drop the connection mid-body."""
        return cls("reset")

    @classmethod
    def error(cls, status: int, retry_after: float | None = None) -> Fault:
        """The provider's own error envelope with ``status`` (and ``Retry-After``)."""
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def malformed(cls) -> Fault:
        """HTTP 200 with a truncated JSON body."""
        return cls("malformed")

    @classmethod
    def safety(cls, after: float = 0.0) -> Fault:
        """The provider's own content-policy refusal (``after`` seconds)."""
        return cls("safety", seconds=after)


class FaultPlan:
    """Thread-safe: tests set faults from their thread, the fake takes them in its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._rate = 0.0
        self._choices: Sequence[Fault] = ()
        self._rng = random.Random(0)

    def next(self, *faults: Fault) -> None:
        with self._lock:
            self._queue.extend(faults)

    def random(self, rate: float, choices: Sequence[Fault], seed: int = 0) -> None:
        with self._lock:
            self._rate, self._choices, self._rng = rate, tuple(choices), random.Random(seed)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._rate, self._choices = 0.0, ()

    def take(self) -> Fault | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self._choices and self._rng.random() < self._rate:
                return self._rng.choice(self._choices)
            return None


@dataclass(frozen=True)
class RecordedCall:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class FakeState:
    """What a fake remembers and how it misbehaves; shared by the test and the server."""

    faults: FaultPlan = field(default_factory=FaultPlan)
    calls: list[RecordedCall] = field(default_factory=list)
    api_key: str = "test-key"
    extra: dict[str, Any] = field(default_factory=dict)

    async def record(self, request: Request) -> bytes:
        body = await request.body()
        self.calls.append(
            RecordedCall(
                method=request.method,
                path=request.url.path,
                query=dict(request.query_params),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                at=time.monotonic(),
            )
        )
        return body


class DroppedConnection:
    """An ASGI response that promises a body, sends part of it and then fails, so the server
    closes the connection: the client sees a broken transfer, as after a reset."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"data": [', "more_body": True})
        raise ConnectionResetError("fake: dropping the connection")


class InFlightMeter:
    """Wraps a fake's ASGI app and counts the requests it is answering at once: ``peak`` is
    the most there ever were, i.e. how many upstream calls the gateway made concurrently."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.now = 0
        self.peak = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


MeteredFake = tuple[FakeState, InFlightMeter, str]
"""A running fake's state (call log, faults), its in-flight meter and its base URL."""


async def apply_timing_fault(fault: Fault | None) -> None:
    """Every fault waits its ``seconds`` first (latency and hang are nothing but that); the
    others then shape the answer, which is each fake's job."""
    if fault is not None and fault.seconds > 0:
        await asyncio.sleep(fault.seconds)


class FakeServer:
    """uvicorn in a daemon thread on 127.0.0.1 and a free port."""

    def __init__(self, app: ASGIApp) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="critical",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake provider did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
