"""The official ``openai`` SDK against a real ``imagegate serve`` process, unchanged."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image
from tests.support import DataDir
from tests.support.processes import ServerProcess, run_cli

pytestmark = pytest.mark.e2e

PIL_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


class Gateway:
    def __init__(self, server: ServerProcess, key: str) -> None:
        self.server = server
        self.key = key
        self.data = DataDir.at(server.data_dir)

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.server.base_url}/v1", api_key=key or self.key)


def _start(tmp: Path) -> Gateway:
    data_dir = tmp / "data"
    created = run_cli("keys", "create", "--name", "e2e", data_dir=data_dir)
    assert created.returncode == 0, created.stderr
    return Gateway(ServerProcess(data_dir).start(), created.stdout.strip())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    running = _start(tmp_path_factory.mktemp("e2e"))
    yield running
    running.server.stop()


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("output_format", ["png", "jpeg", "webp"])
@pytest.mark.parametrize(("size", "n"), [("256x256", 10), ("512x512", 1), ("1536x1024", 2)])
def test_url_responses_serve_real_images_without_a_key(
    gateway: Gateway, output_format: str, size: str, n: int
) -> None:
    result = gateway.client().images.generate(
        model="builtin",
        prompt=f"a red fox, {size}",
        size=size,  # type: ignore[arg-type]
        n=n,
        response_format="url",
        output_format=output_format,  # type: ignore[arg-type]
    )
    assert result.data is not None
    assert len(result.data) == n
    width, height = (int(side) for side in size.split("x"))
    for item in result.data:
        assert item.url is not None
        fetched = httpx.get(item.url)  # no Authorization header
        assert fetched.status_code == 200
        image = _decode(fetched.content)
        assert (image.format, image.size) == (PIL_NAMES[output_format], (width, height))


@pytest.mark.parametrize("output_format", ["png", "jpeg", "webp"])
def test_b64_json_matches_the_bytes_behind_the_url(gateway: Gateway, output_format: str) -> None:
    common = {"model": "builtin", "prompt": "ocean at night", "size": "512x512", "n": 1}
    inline = gateway.client().images.generate(
        **common,  # type: ignore[arg-type]
        response_format="b64_json",
        output_format=output_format,  # type: ignore[arg-type]
    )
    linked = gateway.client().images.generate(
        **common,  # type: ignore[arg-type]
        response_format="url",
        output_format=output_format,  # type: ignore[arg-type]
    )
    assert inline.data is not None
    assert linked.data is not None
    data = base64.b64decode(inline.data[0].b64_json or "")
    assert _decode(data).size == (512, 512)
    assert httpx.get(linked.data[0].url or "").content == data


def test_twenty_concurrent_async_requests(gateway: Gateway) -> None:
    async def burst() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{gateway.server.base_url}/v1", api_key=gateway.key)
        async with client:
            results = await asyncio.gather(
                *(
                    client.images.generate(
                        model="builtin", prompt=f"fox number {i}", size="256x256"
                    )
                    for i in range(20)
                )
            )
        return [r.data[0].url or "" for r in results if r.data]

    urls = asyncio.run(burst())
    assert len(set(urls)) == 20
    for url in urls:
        assert _decode(httpx.get(url).content).size == (256, 256)


def test_a_bad_key_is_an_authentication_error(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError):
        gateway.client("ig_not_a_real_key").images.generate(model="builtin", prompt="fox")


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"n": 0}, openai.BadRequestError, "n must be between 1 and 10"),
        ({"n": 11}, openai.BadRequestError, "n must be between 1 and 10"),
        ({"size": "300x300"}, openai.BadRequestError, "size '300x300' is not supported"),
        ({"prompt": ""}, openai.BadRequestError, "prompt must not be empty"),
        ({"prompt": "x" * 32001}, openai.BadRequestError, "accepts at most 32000"),
        ({"model": "dall-e-9"}, openai.NotFoundError, "does not exist"),
        ({"extra_body": {"n": "two"}}, openai.BadRequestError, "Invalid type for 'n'"),
    ],
)
def test_bad_requests_raise_sdk_errors_and_write_nothing(
    gateway: Gateway, kwargs: dict[str, object], error: type[Exception], fragment: str
) -> None:
    rows_before = gateway.data.count("generations")
    files_before = len(gateway.data.stored_files())
    with pytest.raises(error) as caught:
        gateway.client().images.generate(**{"model": "builtin", "prompt": "fox", **kwargs})  # type: ignore[arg-type]
    assert fragment in str(caught.value)
    assert gateway.data.count("generations") == rows_before
    assert len(gateway.data.stored_files()) == files_before


def test_a_body_that_is_not_json_is_a_bad_request(gateway: Gateway) -> None:
    response = httpx.post(
        f"{gateway.server.base_url}/v1/images/generations",
        content=b"prompt=fox",
        headers={"Authorization": f"Bearer {gateway.key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_a_restart_keeps_every_url_and_record(tmp_path: Path) -> None:
    running = _start(tmp_path)
    try:
        result = running.client().images.generate(
            model="builtin", prompt="fox", n=3, size="256x256"
        )
        urls = [item.url or "" for item in result.data or []]
        before = {url: httpx.get(url).content for url in urls}
        rows = running.data.rows("SELECT id, prompt, outcome FROM generations")
    finally:
        running.server.stop()
    restarted = ServerProcess(running.server.data_dir, port=running.server.port).start()
    try:
        for url, content in before.items():
            assert httpx.get(url).content == content
        assert running.data.rows("SELECT id, prompt, outcome FROM generations") == rows
        again = running.client().images.generate(model="builtin", prompt="fox 2", size="256x256")
        assert again.data
    finally:
        restarted.stop()
