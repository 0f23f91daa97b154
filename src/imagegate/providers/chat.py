"""A small OpenAI-compatible chat-completions client, for prompt enhancement.

``POST {base_url}/chat/completions`` (providers.md section 1b), sent over the same shared
``UpstreamClient`` as every image provider, so it shares the pool, the timeout handling and the
failure classification (``raise_for_status``). Two pure functions (``build_chat_request``,
``parse_chat_reply``) do the wire work; ``ChatCompletions`` joins them.

``max_tokens`` is sent rather than ``max_completion_tokens``: many OpenAI-compatible servers
understand only the older name, and OpenAI still accepts it for chat models.
"""

from __future__ import annotations

import httpx
import orjson

from imagegate.errors import ProviderError
from imagegate.providers.base import ChatAnswer
from imagegate.providers.http import HttpReply, UpstreamClient, raise_for_status, upstream_url
from imagegate.settings import EnhancerSettings

CHARS_PER_TOKEN = 2
"""``max_tokens`` is ``max_output_chars / 2``: a token is 3-4 characters of English, so the
limit that normally stops an over-long answer is the character limit, checked after cleaning;
``max_tokens`` only keeps a runaway answer from running (and billing) for long."""
MIN_MAX_TOKENS = 32
PROVIDER_NAME = "enhancer"


def build_chat_request(settings: EnhancerSettings, prompt: str) -> httpx.Request:
    """The one-turn chat request that asks for a rewrite of ``prompt``."""
    base = (settings.base_url or "").rstrip("/")
    headers = {"accept": "application/json", "content-type": "application/json"}
    if settings.api_key is not None and settings.api_key.get_secret_value():
        headers["authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    body = {
        "model": settings.model,
        "messages": [
            {"role": "system", "content": settings.system_prompt},
            {"role": "user", "content": prompt},
        ],
        "temperature": settings.temperature,
        "max_tokens": max(MIN_MAX_TOKENS, settings.max_output_chars // CHARS_PER_TOKEN),
        "n": 1,
        "stream": False,
    }
    url = upstream_url(f"{base}/chat/completions")
    return httpx.Request("POST", url, headers=headers, content=orjson.dumps(body))


def parse_chat_reply(reply: HttpReply) -> ChatAnswer:
    """The first choice's text; a non-2xx reply or a body without one is a ``ProviderError``."""
    error = reply.json_object().get("error")
    message = error.get("message") if isinstance(error, dict) else None
    raise_for_status(reply, message if isinstance(message, str) else None)
    body = reply.json()
    choices = body.get("choices") if isinstance(body, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    answer = first.get("message") if isinstance(first, dict) else None
    if not isinstance(answer, dict):
        raise ProviderError(f"{reply.provider} answered HTTP {reply.status} without a message")
    content = answer.get("content")
    refusal = answer.get("refusal")
    finish = first.get("finish_reason") if isinstance(first, dict) else None
    return ChatAnswer(
        text=content if isinstance(content, str) else "",
        finish_reason=finish if isinstance(finish, str) else None,
        refused=isinstance(refusal, str) and bool(refusal),
    )


class ChatCompletions:
    """The configured chat endpoint (``ChatModel``): one call per ``complete``."""

    def __init__(self, settings: EnhancerSettings, client: UpstreamClient) -> None:
        self._settings = settings
        self._client = client
        self.model = settings.model

    async def complete(self, prompt: str) -> ChatAnswer:
        reply = await self._client.send(
            build_chat_request(self._settings, prompt),
            provider=PROVIDER_NAME,
            seconds=self._settings.timeout_seconds,
        )
        return parse_chat_reply(reply)
