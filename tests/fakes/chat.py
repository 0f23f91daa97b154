"""Loopback fake of an OpenAI-compatible chat-completions endpoint (``POST /v1/chat/completions``).

It answers in the wire format of providers.md section 1b (``choices[].message.content``,
``finish_reason``, ``usage``; errors in the ``{"error": {...}}`` envelope), checks the bearer key
and the request's shape, and rewrites the user's prompt the way chatty LLMs do: with a "Sure!"
preamble, a label, quotes and markdown around the prompt, so the cleaning is exercised on every
call. ``enhanced(prompt)`` is what the cleaned rewrite must be.

Set ``state.extra["content"]`` to answer with that text instead (garbage, empty, over-long),
``state.extra["finish_reason"]`` / ``state.extra["refusal"]`` to vary the ending. Faults come
from ``state.faults`` (latency, hang, reset, status, malformed; safety = a refusal).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp
from tests.fakes.server import DroppedConnection, FakeState, apply_timing_fault

SUFFIX = ", highly detailed, golden hour light, 35mm photograph"


def enhanced(prompt: str) -> str:
    """The cleaned rewrite of ``prompt`` the fake's default answer holds."""
    return f"{prompt}{SUFFIX}"


def chatty_answer(prompt: str) -> str:
    return f'Sure! Here is an enhanced prompt:\n\n**"{enhanced(prompt)}"**\n\nLet me know!'


def _error(status: int, message: str, code: str | None = None) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": code}}  # fmt: skip
    return Response(orjson.dumps(body), status, media_type="application/json")


def build_chat_fake(state: FakeState) -> Starlette:
    async def completions(request: Request) -> ASGIApp:
        body = await state.record(request)
        fault = state.faults.take()
        await apply_timing_fault(fault)
        if fault is not None and fault.kind == "reset":
            return DroppedConnection()
        if fault is not None and fault.kind == "status":
            return _error(fault.status, "The server had an error processing your request.")
        if fault is not None and fault.kind == "malformed":
            return Response(b'{"id": "chatcmpl-1", "choices": [{"mess', 200)
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        try:
            fields: dict[str, Any] = orjson.loads(body)
            messages = fields["messages"]
            prompt = next(m["content"] for m in messages if m["role"] == "user")
            shaped = messages[0]["role"] == "system" and bool(fields["model"])
        except (orjson.JSONDecodeError, KeyError, StopIteration, IndexError, TypeError):
            shaped = False
        if not shaped:
            return _error(400, "Invalid chat completion request.")
        refused = fault is not None and fault.kind == "safety"
        content = state.extra.get("content", chatty_answer(prompt))
        message = {
            "role": "assistant",
            "content": None if refused else content,
            "refusal": "I can't help with that." if refused else state.extra.get("refusal"),
        }
        answer = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": fields["model"],
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": state.extra.get("finish_reason", "stop"),
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50},
        }
        return Response(orjson.dumps(answer), 200, media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
