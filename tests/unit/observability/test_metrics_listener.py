"""The separate metrics listener (IMAGEGATE_METRICS_BIND) on a real loopback socket: what it
answers to requests that are not a plain scrape, and that it lets go of its port."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from tests.support.processes import free_port

from imagegate.errors import ConfigurationError
from imagegate.observability.metrics import Metrics
from imagegate.observability.metrics_listener import MAX_HEAD_BYTES, metrics_listener


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return answer


async def test_it_answers_scrapes_and_refuses_everything_else() -> None:
    metrics = Metrics()
    metrics.observe_http("/v1/models", "GET", 200, 0.01)
    port = free_port()
    async with metrics_listener(metrics, ("127.0.0.1", port)):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            scraped = await client.get("/metrics?name[]=x")
            assert scraped.status_code == 200
            assert 'route="/v1/models"' in scraped.text
            assert scraped.headers["cache-control"] == "no-store"
            assert (await client.get("/")).status_code == 404
            assert (await client.delete("/metrics")).status_code == 405
        garbage = await _raw(port, b"NONSENSE\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        huge = await _raw(
            port, b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"
        )
        assert huge.startswith(b"HTTP/1.1 431 ")
    with pytest.raises(ConnectionRefusedError):  # closed with the block: nothing listens any more
        await asyncio.open_connection("127.0.0.1", port)


async def test_no_address_means_no_listener() -> None:
    async with metrics_listener(Metrics(), None):
        pass  # nothing to connect to, and nothing raised


async def test_a_taken_port_is_a_configuration_error_naming_the_setting() -> None:
    taken = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = taken.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConfigurationError) as caught:
            async with metrics_listener(Metrics(), ("127.0.0.1", port)):
                pass
    finally:
        taken.close()
        await taken.wait_closed()
    assert caught.value.param == "IMAGEGATE_METRICS_BIND"
    assert f"127.0.0.1:{port}" in caught.value.message
