"""The chat-completions wire functions: what is sent, how each answer is read."""

from __future__ import annotations

import orjson
import pytest

from imagegate.errors import ProviderError, ProviderRateLimited, ProviderRejected
from imagegate.providers.base import ChatAnswer
from imagegate.providers.chat import build_chat_request, parse_chat_reply
from imagegate.providers.http import HttpReply
from imagegate.settings import EnhancerSettings


def test_the_request_is_one_system_and_one_user_message_with_a_token_cap() -> None:
    settings = EnhancerSettings(
        base_url="http://llm.test/v1/", api_key="sk-secret", model="m", max_output_chars=500
    )  # type: ignore[arg-type]
    request = build_chat_request(settings, "a fox")
    assert str(request.url) == "http://llm.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-secret"
    body = orjson.loads(request.content)
    assert body["model"] == "m"
    assert body["messages"] == [
        {"role": "system", "content": settings.system_prompt},
        {"role": "user", "content": "a fox"},
    ]
    assert body["max_tokens"] == 250
    assert "max_completion_tokens" not in body  # many compatible servers only know max_tokens


def test_no_key_sends_no_authorization() -> None:
    request = build_chat_request(EnhancerSettings(base_url="http://llm.test/v1"), "a fox")
    assert "authorization" not in request.headers


def _reply(status: int, body: object, headers: dict[str, str] | None = None) -> HttpReply:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return HttpReply(status, headers or {}, content, "enhancer")


def _choice(message: dict[str, object], finish: str = "stop") -> dict[str, object]:
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish,
                         "logprobs": None}]}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        (_choice({"role": "assistant", "content": "A fox"}), ChatAnswer("A fox", "stop")),
        (_choice({"role": "assistant", "content": "A fo"}, "length"), ChatAnswer("A fo", "length")),
        (
            _choice({"role": "assistant", "content": None, "refusal": "No."}),
            ChatAnswer("", "stop", refused=True),
        ),
        (_choice({"role": "assistant"}), ChatAnswer("", "stop")),
    ],
)
def test_answers_are_read_from_the_first_choice(body: object, answer: ChatAnswer) -> None:
    assert parse_chat_reply(_reply(200, body)) == answer


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, b'{"choices": [{"mess', ProviderError),
        (200, {"choices": []}, ProviderError),
        (200, {"object": "chat.completion"}, ProviderError),
        (500, {"error": {"message": "boom"}}, ProviderError),
        (429, {"error": {"message": "slow down"}}, ProviderRateLimited),
        (401, {"error": {"message": "bad key sk-abc"}}, ProviderRejected),
    ],
)
def test_failures_are_classified(status: int, body: object, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        parse_chat_reply(_reply(status, body))
    assert "sk-abc" not in str(raised.value)
