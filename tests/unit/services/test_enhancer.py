"""The prompt enhancer against a loopback fake chat-completions server (real HTTP on 127.0.0.1):
a good rewrite is cleaned and used; a slow, failing, garbled or over-long one falls back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import orjson
import pytest
from tests.fakes.chat import build_chat_fake, enhanced
from tests.fakes.server import FakeServer, FakeState, Fault

from imagegate.catalog import Catalog, ModelSpec
from imagegate.models import NormalizedRequest, OutputFormat, ResponseFormat, Size
from imagegate.providers.chat import ChatCompletions
from imagegate.providers.http import UpstreamClient
from imagegate.services.enhancer import ENHANCED, FALLBACK, PromptEnhancer, clean_rewrite
from imagegate.settings import EnhancerSettings

PROMPT = "a red fox in the snow"


@pytest.mark.parametrize(
    ("answer", "cleaned"),
    [
        ("A red fox, oil painting", "A red fox, oil painting"),
        ('"A red fox, oil painting"', "A red fox, oil painting"),
        ("“A red fox”", "A red fox"),
        ("Sure! Here is the enhanced prompt: A red fox", "A red fox"),
        ('Here\'s an improved prompt:\n\n"A red fox"', "A red fox"),
        ("Certainly, here is your prompt:\n**A red fox** at *dawn*", "A red fox at dawn"),
        ("Enhanced prompt: A red fox", "A red fox"),
        ("```\nA red fox,\nsnow\n```", "A red fox, snow"),
        ("```text\nA red fox\n```\nThis prompt adds detail.", "A red fox"),
        ("# A red fox\n\n- snow\n- dawn", "A red fox snow dawn"),
        ("A red fox\n\nLet me know if you'd like changes!", "A red fox"),
        ("A [red fox](https://x.test) in `snow`", "A red fox in snow"),
        ('"a" and "b"', '"a" and "b"'),
        ("A fox: sly, red", "A fox: sly, red"),
        ("Sure!", ""),
        ('""', ""),
        ("   \n\n ", ""),
    ],
)
def test_clean_rewrite_keeps_only_the_prompt(answer: str, cleaned: str) -> None:
    assert clean_rewrite(answer) == cleaned


@pytest.fixture
def chat_state() -> Iterator[tuple[FakeState, str]]:
    state = FakeState()
    with FakeServer(build_chat_fake(state)) as server:
        yield state, f"{server.base_url}/v1"


@pytest.fixture
async def upstream() -> AsyncIterator[UpstreamClient]:
    async with UpstreamClient() as client:
        yield client


def _enhancer(url: str, client: UpstreamClient, **settings: object) -> PromptEnhancer:
    config = EnhancerSettings(base_url=url, api_key="test-key", model="fake-llm", **settings)  # type: ignore[arg-type]
    return PromptEnhancer(ChatCompletions(config, client), config)


def _spec(**update: object) -> ModelSpec:
    return Catalog.load().get("builtin").model_copy(update=update)


def _request(prompt: str = PROMPT) -> NormalizedRequest:
    return NormalizedRequest(
        model="builtin", prompt=prompt, n=1, size=Size(256, 256), quality="auto",
        output_format=OutputFormat.PNG, output_compression=None, style=None, background=None,
        seed=None, response_format=ResponseFormat.URL, enhance_prompt=True,
    )  # fmt: skip


async def test_a_chatty_answer_is_cleaned_and_used(
    chat_state: tuple[FakeState, str], upstream: UpstreamClient
) -> None:
    state, url = chat_state
    result = await _enhancer(url, upstream).apply(_spec(), _request())
    assert result.request.prompt == result.enhanced_prompt == enhanced(PROMPT)
    assert result.event is not None
    assert result.event.type == ENHANCED
    assert not result.fell_back
    (call,) = state.calls
    assert call.headers["authorization"] == "Bearer test-key"
    body = orjson.loads(call.body)
    assert body["model"] == "fake-llm"
    assert body["messages"][1] == {"role": "user", "content": PROMPT}


async def test_a_request_that_does_not_ask_calls_no_llm(
    chat_state: tuple[FakeState, str], upstream: UpstreamClient
) -> None:
    state, url = chat_state
    plain = replace(_request(), enhance_prompt=False)
    result = await _enhancer(url, upstream).apply(_spec(), plain)
    assert (result.request, result.event) == (plain, None)
    assert state.calls == []


@pytest.mark.parametrize(
    ("fault", "extra", "reason"),
    [
        (Fault.hang(5), {}, "timeout"),
        (Fault.error(500), {}, "error"),
        (Fault.error(429), {}, "error"),
        (Fault.malformed(), {}, "error"),
        (Fault.reset(), {}, "error"),
        (Fault.safety(), {}, "refused"),
        (None, {"content": ""}, "empty"),
        (None, {"content": "Sure! Here is the prompt:\n\n```\n```"}, "empty"),
        (None, {"content": "x" * 301}, "too_long"),
        (None, {"finish_reason": "length"}, "too_long"),
    ],
)
async def test_every_failure_falls_back_to_the_original_prompt(
    chat_state: tuple[FakeState, str],
    upstream: UpstreamClient,
    fault: Fault | None,
    extra: dict[str, object],
    reason: str,
) -> None:
    state, url = chat_state
    if fault is not None:
        state.faults.next(fault)
    state.extra.update(extra)
    enhancer = _enhancer(url, upstream, timeout_seconds=0.3, max_output_chars=300)
    result = await enhancer.apply(_spec(), _request())
    assert result.request.prompt == PROMPT
    assert result.enhanced_prompt is None
    assert result.fell_back
    assert result.event is not None
    assert (result.event.type, result.event.data["reason"]) == (FALLBACK, reason)


async def test_a_wrong_key_falls_back_and_the_key_is_not_recorded(
    chat_state: tuple[FakeState, str], upstream: UpstreamClient
) -> None:
    _, url = chat_state
    config = EnhancerSettings(base_url=url, api_key="sk-wrong-secret")  # type: ignore[arg-type]
    result = await PromptEnhancer(ChatCompletions(config, upstream), config).apply(
        _spec(), _request()
    )
    assert result.event is not None
    assert result.event.data["code"] == "upstream_auth_failed"
    assert "sk-wrong-secret" not in repr(result.event)


async def test_an_unreachable_endpoint_falls_back(upstream: UpstreamClient) -> None:
    with FakeServer(build_chat_fake(FakeState())) as server:
        url = f"{server.base_url}/v1"
    result = await _enhancer(url, upstream).apply(_spec(), _request())
    assert result.event is not None
    assert (result.request.prompt, result.event.data["reason"]) == (PROMPT, "error")


async def test_a_rewrite_is_capped_at_the_models_prompt_limit(
    chat_state: tuple[FakeState, str], upstream: UpstreamClient
) -> None:
    state, url = chat_state
    state.extra["content"] = "a fox " * 20  # 119 characters once cleaned
    result = await _enhancer(url, upstream).apply(_spec(max_prompt_chars=40), _request())
    assert result.enhanced_prompt is not None
    assert len(result.enhanced_prompt) <= 40
    assert result.enhanced_prompt.startswith("a fox a fox")
    assert not result.enhanced_prompt.endswith(" ")
    assert result.event is not None
    assert result.event.data["capped"] is True


def test_who_gets_enhanced() -> None:
    settings = EnhancerSettings(base_url="http://127.0.0.1:9/v1", models=["listed"])  # type: ignore[arg-type]
    on = PromptEnhancer(ChatCompletions(settings, UpstreamClient()), settings)
    off = PromptEnhancer(None, EnhancerSettings())
    plain, listed, flagged = _spec(), _spec(name="listed"), _spec(enhance_prompt=True)
    assert [on.wanted(plain, None), on.wanted(listed, None), on.wanted(flagged, None)] == [
        False, True, True,
    ]  # fmt: skip
    assert [on.wanted(plain, True), on.wanted(listed, False)] == [True, False]
    assert [off.wanted(flagged, None), off.wanted(plain, True)] == [False, False]
    assert off.unavailable(True)[0].data == {"reason": "not_configured"}
    assert off.unavailable(None) == on.unavailable(True) == ()
