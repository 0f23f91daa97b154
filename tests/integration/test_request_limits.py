"""Limits on what a client sends, against a real ``imagegate serve`` on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.processes import ServerProcess, start_gateways

LIMIT = 4096


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    folder: Path = tmp_path_factory.mktemp("limits")
    servers, key = start_gateways(folder, {}, IMAGEGATE_REQUESTS__MAX_BODY_BYTES=str(LIMIT))
    server: ServerProcess = servers[0]
    try:
        yield server.base_url, {"Authorization": f"Bearer {key}"}
    finally:
        server.stop()


def _assert_openai_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


def test_a_declared_body_over_the_limit_is_refused_with_the_limit_named(
    gateway: tuple[str, dict[str, str]],
) -> None:
    url, auth = gateway
    body = b'{"prompt": "' + b"a" * LIMIT + b'"}'
    response = httpx.post(f"{url}/v1/images/generations", content=body, headers=auth)
    error = _assert_openai_error(response, 413)
    assert str(LIMIT) in str(error["message"])
    assert "IMAGEGATE_REQUESTS__MAX_BODY_BYTES" in str(error["message"])


def test_a_chunked_body_without_length_is_cut_off_at_the_limit(
    gateway: tuple[str, dict[str, str]],
) -> None:
    url, auth = gateway
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"prompt": "'
        for _ in range(1000):  # 1 MB offered; the server stops listening long before
            sent += 1024
            yield b"a" * 1024

    headers = {**auth, "Content-Type": "application/json"}
    try:
        response = httpx.post(f"{url}/v1/images/generations", content=chunks(), headers=headers)
    except httpx.TransportError:
        pytest.fail("the server dropped the connection instead of answering 413")
    assert "content-length" not in {k.lower() for k in response.request.headers}
    error = _assert_openai_error(response, 413)
    assert str(LIMIT) in str(error["message"])


def test_a_multipart_edit_over_the_limit_is_refused(gateway: tuple[str, dict[str, str]]) -> None:
    url, auth = gateway
    files = {"image": ("a.png", b"\x89PNG" + b"\0" * LIMIT, "image/png")}
    response = httpx.post(f"{url}/v1/images/edits", data={"prompt": "x"}, files=files, headers=auth)
    _assert_openai_error(response, 413)


def test_a_small_request_still_works(gateway: tuple[str, dict[str, str]]) -> None:
    url, auth = gateway
    response = httpx.post(
        f"{url}/v1/images/generations",
        json={"prompt": "a fox", "model": "builtin", "response_format": "b64_json"},
        headers=auth,
        timeout=60,
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("prompt", ["a\x00fox", "a\x1bfox", "a\x7ffox", "a\ud800fox"])
def test_control_characters_and_lone_surrogates_are_refused(
    gateway: tuple[str, dict[str, str]], prompt: str
) -> None:
    url, auth = gateway
    body = ('{"prompt": ' + json.dumps(prompt) + ', "model": "builtin"}').encode()
    headers = {**auth, "Content-Type": "application/json"}
    response = httpx.post(f"{url}/v1/images/generations", content=body, headers=headers)
    error = _assert_openai_error(response, 400)
    assert error["param"] == "prompt"


def test_invalid_utf8_is_refused(gateway: tuple[str, dict[str, str]]) -> None:
    url, auth = gateway
    headers = {**auth, "Content-Type": "application/json"}
    body = b'{"prompt": "a \xff\xfe fox"}'
    response = httpx.post(f"{url}/v1/images/generations", content=body, headers=headers)
    _assert_openai_error(response, 400)


def test_deeply_nested_json_is_refused(gateway: tuple[str, dict[str, str]]) -> None:
    url, auth = gateway
    headers = {**auth, "Content-Type": "application/json"}
    body = b'{"prompt": "x", "user": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    response = httpx.post(f"{url}/v1/images/generations", content=body, headers=headers)
    _assert_openai_error(response, 400)
