"""A bound on how deeply a JSON body nests, checked before any JSON parser sees it.

Python's ``json`` recurses once per level (a deep enough body is a ``RecursionError``, i.e. a
500), and pydantic walks every level again. No request of imagegate nests more than a few
levels, so a JSON body nesting deeper than ``IMAGEGATE_REQUESTS__MAX_JSON_DEPTH`` is refused
with 400 ``json_too_deep``.

The check runs in C-speed passes over the bytes: strings are cut out with one regex, every
byte but brackets is deleted, then innermost ``[]`` / ``{}`` pairs are removed once per level;
pairs still left after ``max_depth`` passes mean a deeper body. Unbalanced input is left to
the parser, which reports it as invalid JSON. Bodies of other types pass untouched.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.api.errors import error_response

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_INNERMOST = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_exceeds(body: bytes, max_depth: int) -> bool:
    """Whether ``body`` (JSON text) nests arrays and objects more than ``max_depth`` deep."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False  # not even that many brackets in total (the common case, at once)
    skeleton = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        reduced = _INNERMOST.sub(b"", skeleton)  # one level: sub never rescans its output
        if reduced == skeleton:
            return False
        skeleton = reduced
    return _INNERMOST.search(skeleton) is not None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True  # FastAPI parses a body without a content type as JSON


class JsonDepthMiddleware:
    def __init__(self, app: ASGIApp, max_depth: int) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD") or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if nesting_exceeds(body, self.max_depth):
            response = error_response(
                400,
                f"The JSON body nests deeper than {self.max_depth} levels "
                "(IMAGEGATE_REQUESTS__MAX_JSON_DEPTH).",
                type="invalid_request_error",
                code="json_too_deep",
            )
            await response(scope, receive, send)
            return
        replayed: Message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([replayed], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replaying() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replaying
