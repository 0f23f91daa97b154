"""Limits on what a client sends, against a real ``imagegate serve`` on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.processes import ServerProcess, start_gateways

LIMIT = 4096
HEADER_LIMIT = 8192


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    folder: Path = tmp_path_factory.mktemp("limits")
    servers, key = start_gateways(
        folder,
        {},
        IMAGEGATE_REQUESTS__MAX_BODY_BYTES=str(LIMIT),
        IMAGEGATE_REQUESTS__MAX_HEADER_BYTES=str(HEADER_LIMIT),
    )
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
    error = _assert_openai_error(response, 400)
    assert error["code"] == "json_too_deep"
    assert "32" in str(error["message"])


def test_json_one_level_past_the_depth_limit_is_refused_and_at_it_is_parsed(
    gateway: tuple[str, dict[str, str]],
) -> None:
    url, auth = gateway
    headers = {**auth, "Content-Type": "application/json"}
    for depth, code in [(33, "json_too_deep"), (32, "invalid_type")]:
        inner = b"[" * (depth - 1) + b"]" * (depth - 1)  # the outer object is level 1
        body = b'{"prompt": "x", "user": ' + inner + b"}"
        response = httpx.post(f"{url}/v1/images/generations", content=body, headers=headers)
        assert _assert_openai_error(response, 400)["code"] == code, depth
    # brackets inside strings are text, not nesting
    prompt = json.dumps("[{" * 100 + "a fox")
    body = ('{"prompt": ' + prompt + ', "model": "builtin"}').encode()
    answer = httpx.post(f"{url}/v1/images/generations", content=body, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text


def _raw_request(url: str, head: bytes, *, trickle: int | None = None) -> bytes:
    """Send ``head`` on a raw socket (in ``trickle``-byte writes if given); the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            step = trickle or len(head)
            for start in range(0, len(head), step):
                sock.sendall(head[start : start + step])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _status_and_error(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"]


@pytest.mark.parametrize("shape", ["one huge header", "many headers", "huge url"])
def test_request_heads_over_the_limit_get_431_naming_it(
    gateway: tuple[str, dict[str, str]], shape: str
) -> None:
    url, auth = gateway
    if shape == "one huge header":
        extra = b"X-Big: " + b"a" * 200_000 + b"\r\n"
        target = b"/v1/models"
    elif shape == "many headers":
        extra = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(2000))
        target = b"/v1/models"
    else:
        extra = b""
        target = b"/v1/models?q=" + b"c" * 200_000
    head = (
        b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: " + auth["Authorization"].encode() + b"\r\n" + extra + b"\r\n"
    )
    status, error = _status_and_error(_raw_request(url, head))
    assert status == 431
    assert error["code"] == "request_headers_too_large"
    assert str(HEADER_LIMIT) in str(error["message"])
    assert set(error) == {"message", "type", "param", "code"}


def test_a_header_that_never_ends_is_cut_off_at_the_limit(
    gateway: tuple[str, dict[str, str]],
) -> None:
    url, _ = gateway
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"d" * 100_000  # no CRLF
    status, _ = _status_and_error(_raw_request(url, head, trickle=1024))
    assert status == 431


def test_heads_under_the_limit_are_served(gateway: tuple[str, dict[str, str]]) -> None:
    url, auth = gateway
    headers = {**auth, "X-Padding": "e" * (HEADER_LIMIT // 2)}
    response = httpx.get(f"{url}/v1/models", headers=headers)
    assert response.status_code == 200, response.text
    # and the connection-level limit resets per request: keep-alive requests all pass
    with httpx.Client(base_url=url, headers=headers) as client:
        for _ in range(5):
            assert client.get("/v1/models").status_code == 200
