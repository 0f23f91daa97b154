"""The Telegram bot against a loopback fake of the Bot API (real HTTP, real long polling), on
real services: SQLite, local storage, the job queue and its worker, the built-in renderer and
the OpenAI fake (held per prompt by a gate, so every step of a conversation is reached in a
known order)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tests.fakes.chat import build_chat_fake, enhanced
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault
from tests.fakes.telegram import TelegramState, build_telegram_fake
from tests.support.processes import IMAGEGATE, environment, free_port

from imagegate.api.app import create_app
from imagegate.bots import replies
from imagegate.bots.telegram import TelegramBot
from imagegate.container import Services, build_services
from imagegate.errors import ConfigurationError
from imagegate.models import Role
from imagegate.queue.worker import embedded_workers
from imagegate.settings import Settings

TOKEN = "123456:TEST-TelegramBotToken-5f2c9e"
ANN, BOB = 1001, 1002


def image_prompt(body: dict[str, Any]) -> str | None:
    """The prompt of an OpenAI Images request."""
    return body.get("prompt")


def chat_prompt(body: dict[str, Any]) -> str | None:
    """The user's prompt in a chat-completions request (the enhancer's)."""
    return next((m["content"] for m in body.get("messages", ()) if m["role"] == "user"), None)


class PromptGate:
    """Holds every upstream request until the test lets its prompt through."""

    def __init__(
        self, app: ASGIApp, prompt_of: Callable[[dict[str, Any]], str | None] = image_prompt
    ) -> None:
        self.app = app
        self.prompt_of = prompt_of
        self._open: set[str] = set()
        self._lock = threading.Lock()

    def release(self, *prompts: str) -> None:
        with self._lock:
            self._open.update(prompts)

    def _is_open(self, prompt: str | None) -> bool:
        with self._lock:
            return prompt in self._open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        prompt = self.prompt_of(json.loads(body)) if body else None
        # Opened from the test's thread and event loop: an asyncio.Event cannot cross them.
        while not self._is_open(prompt):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@pytest.fixture
def telegram() -> Iterator[tuple[TelegramState, str]]:
    state = TelegramState(TOKEN)
    with FakeServer(build_telegram_fake(state)) as server:
        yield state, server.base_url


@pytest.fixture
def upstream() -> Iterator[tuple[FakeState, PromptGate, str]]:
    state = FakeState()
    gate = PromptGate(build_openai_fake(state))
    with FakeServer(gate) as server:
        yield state, gate, server.base_url


@pytest.fixture
def llm() -> Iterator[tuple[FakeState, PromptGate, str]]:
    """The prompt enhancer's chat-completions fake, held per prompt like the images fake."""
    state = FakeState()
    gate = PromptGate(build_chat_fake(state), chat_prompt)
    with FakeServer(gate) as server:
        yield state, gate, server.base_url


def make_settings(
    tmp_path: Path,
    telegram_url: str,
    openai_url: str,
    enhancer: dict[str, Any] | None = None,
    **telegram: Any,
) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        public_url="http://testserver",
        providers={
            "openai": {"kind": "openai", "api_key": "test-key", "base_url": f"{openai_url}/v1"}
        },
        routes={
            model: {"targets": [{"model": model}], "concurrency": 1}
            for model in ("gpt-image-1", "dall-e-3")
        },
        resilience={"max_attempts": 1},
        jobs={"max_attempts": 1, "poll_seconds": 0.05, "shutdown_seconds": 0},
        enhancer=enhancer or {},
        telegram={"token": TOKEN, "base_url": telegram_url, "poll_timeout_seconds": 1, **telegram},
    )  # type: ignore[arg-type]


def enhancer_at(chat_url: str) -> dict[str, Any]:
    return {"base_url": f"{chat_url}/v1", "api_key": "test-key", "timeout_seconds": 2}


@pytest.fixture
def settings(
    tmp_path: Path,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
) -> Settings:
    return make_settings(tmp_path, telegram[1], upstream[2])


@asynccontextmanager
async def running_bot(settings: Settings) -> AsyncIterator[tuple[Services, TelegramBot]]:
    async with build_services(settings) as services:
        bot = TelegramBot(services)
        async with bot.running():
            yield services, bot


def queued(position: int, model: str) -> str:
    return f"⏳ Queued: position {position} in the {model} queue."


def generating(model: str) -> str:
    return f"🎨 Generating with {model}…"


ENHANCING = "✍️ Improving your prompt…"


def photos_in(chat: TelegramState, chat_id: int) -> list[tuple[str, ...]]:
    return [entry for entry in chat.conversation(chat_id) if entry[0] == "photo"]


@asynccontextmanager
async def http_client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def key_of(services: Services, user_name: str, role: Role = Role.USER) -> dict[str, str]:
    """An API key of ``user_name`` (the bot's own key never shows its secret)."""
    issued = await services.keys.create(f"test-{role.value}", role, user_name)
    return {"Authorization": f"Bearer {issued.secret}"}


async def test_two_models_in_flight_each_with_its_own_queue_and_a_provider_failure(
    settings: Settings,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
) -> None:
    chat, _ = telegram
    provider, gate, _ = upstream
    async with running_bot(settings) as (services, _bot):
        chat.feed_text(ANN, "/image=gpt-image-1=a red fox")
        chat.feed_text(ANN, "/image=gpt-image-1=a blue whale")
        chat.feed_text(BOB, "/image=dall-e-3=a green owl")
        await chat.until(lambda: len(chat.calls_of("sendMessage")) == 3)
        # No worker yet: all three wait, each in its own model's queue.
        assert chat.conversation(ANN) == [
            ("message", "1", queued(1, "gpt-image-1")),
            ("message", "2", queued(2, "gpt-image-1")),
        ]
        assert chat.conversation(BOB) == [("message", "1", queued(1, "dall-e-3"))]

        async with embedded_workers(services):
            # The fox and the owl start at once (one lane each); the whale moves up.
            await chat.until(
                lambda: (
                    chat.status_history(ANN, "1")[-1] == generating("gpt-image-1")
                    and chat.status_history(ANN, "2")[-1] == queued(1, "gpt-image-1")
                    and chat.status_history(BOB, "1")[-1] == generating("dall-e-3")
                )
            )
            gate.release("a red fox")
            await chat.until(lambda: chat.status_history(ANN, "2")[-1] == generating("gpt-image-1"))
            provider.faults.next(Fault.error(500))
            gate.release("a green owl")
            await chat.until(lambda: len(chat.status_history(BOB, "1")) == 3)
            gate.release("a blue whale")
            await chat.until(lambda: chat.status_history(ANN, "2")[-1] == replies.DONE)

            # Bob tries again: the owl is drawn, with DALL·E 3's revised prompt.
            chat.feed_text(BOB, "/image=dall-e-3=a green owl")
            await chat.until(lambda: chat.status_history(BOB, "2")[-1:] == [replies.DONE])

    assert chat.status_history(ANN, "1") == [
        queued(1, "gpt-image-1"),
        generating("gpt-image-1"),
        replies.DONE,
    ]
    assert chat.status_history(ANN, "2") == [
        queued(2, "gpt-image-1"),
        queued(1, "gpt-image-1"),
        generating("gpt-image-1"),
        replies.DONE,
    ]
    assert [entry for entry in chat.conversation(ANN) if entry[0] == "photo"] == [
        ("photo", "a red fox\n\ngpt-image-1 · new image"),
        ("photo", "a blue whale\n\ngpt-image-1 · new image"),
    ]
    assert len(chat.conversation(ANN)) == 2 + 5 + 2  # two messages, five edits, two photos
    failed = (
        "⚠️ dall-e-3 failed to make the image. Try another model, e.g. /image=builtin=<prompt>; "
        "/models lists them."
    )
    assert chat.status_history(BOB, "1") == [queued(1, "dall-e-3"), generating("dall-e-3"), failed]
    # Bob's second try: a new status message (id 2), then the photo (id 3).
    assert chat.conversation(BOB)[-2] == (
        "photo",
        "A detailed illustration of a green owl\n\ndall-e-3 · new image",
    )
    assert chat.status_history(BOB, "2")[0] == queued(1, "dall-e-3")
    assert chat.status_history(BOB, "2")[-1] == replies.DONE
    for photo in chat.calls_of("sendPhoto"):
        with Image.open(io.BytesIO(photo.files["photo"])) as image:
            assert image.size == (1024, 1024)


async def test_commands_cache_hits_usage_and_the_gallery_of_the_mapped_user(
    tmp_path: Path,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
) -> None:
    chat, telegram_url = telegram
    settings = make_settings(tmp_path, telegram_url, upstream[2], images_per_day=50)
    async with running_bot(settings) as (services, bot), embedded_workers(services):
        names = sorted(spec.name for spec in services.generations.available_models())
        for text in ("/help", "/models", "/image=nope=a cat", "/image=builtin", "hello"):
            chat.feed_text(ANN, text)
        await chat.until(lambda: len(chat.calls_of("sendMessage")) == 5)
        chat.feed_text(ANN, "/image a cat")
        await chat.until(lambda: len(chat.calls_of("sendPhoto")) == 1)
        chat.feed_text(ANN, "/image a cat")
        await chat.until(lambda: len(chat.calls_of("sendPhoto")) == 2)
        await chat.until(lambda: chat.status_history(ANN, "8")[-1:] == [replies.DONE])
        chat.feed_text(ANN, "/usage")
        await chat.until(lambda: len(chat.calls_of("sendMessage")) == 8)

        principal = await bot.principal_for(ANN)
        gallery_key = await services.keys.create("gallery", user=principal.user_name)
        auth = {"Authorization": f"Bearer {gallery_key.secret}"}
        stranger = await key_of(services, "someone-else")
        async with http_client(services) as http:
            listed = await http.get("/v1/images", headers=auth)
            api_usage = await http.get("/v1/usage", headers=auth)
            not_theirs = await http.get("/v1/images", headers=stranger)
            signed_in = await http.post("/signin", data={"api_key": gallery_key.secret})
            gallery = await http.get("/")
            usage_page = await http.get("/usage")
            first_id = listed.json()["data"][0]["id"]
            detail_page = await http.get(f"/images/{first_id}")

    said = chat.conversation(ANN)
    assert said[:5] == [
        ("message", "1", replies.help_text("builtin")),
        ("message", "2", replies.models_text(names, "builtin")),
        ("message", "3", f"Unknown model “nope”. Choose one of: {', '.join(names)}."),
        ("message", "4", "Write it as /image=<model>=<prompt>, e.g. /image=builtin=a red fox."),
        (
            "message",
            "5",
            "Send /image=<model>=<prompt> or /image <prompt> to draw; /help for more.",
        ),
    ]
    first_status = chat.status_history(ANN, "6")
    assert first_status in (
        [queued(1, "builtin"), replies.DONE],
        [queued(1, "builtin"), generating("builtin"), replies.DONE],
    )
    photos = [entry for entry in said if entry[0] == "photo"]
    assert photos == [
        ("photo", "a cat\n\nbuiltin · new image"),
        ("photo", "a cat\n\nbuiltin · from the cache"),
    ]
    usage = chat.calls_of("sendMessage")[-1].params["text"]
    month = datetime.now(UTC).strftime("%Y-%m-01")
    assert usage.startswith(
        f"Your usage since {month} (UTC): 2 images, $0.00 spent; 1 from the cache ($0.00 saved)."
    )
    quota = r"• this day: \d of 50 images used \(resets \d{4}-\d\d-\d\d 00:00 UTC\)"
    assert re.search(quota, usage)

    assert listed.status_code == 200
    assert principal.user_name == f"telegram:{ANN}"
    prompts = [image["prompt"] for image in listed.json()["data"]]
    assert prompts
    assert set(prompts) == {"a cat"}
    assert not_theirs.json()["data"] == []
    # the web UI of the mapped user: the gallery links every image, the usage page counts both
    assert signed_in.status_code == 303
    for image in listed.json()["data"]:
        assert f'href="/images/{image["id"]}"' in gallery.text
    assert "a cat" in detail_page.text
    assert "<dt>Images</dt><dd>2</dd>" in usage_page.text
    assert "<dt>Cache hit rate</dt><dd>50%</dd>" in usage_page.text
    assert "<td>builtin</td>" in usage_page.text
    report = api_usage.json()
    assert report["user"] == f"telegram:{ANN}"
    assert {k: report["totals"][k] for k in ("requests", "images", "generated", "cache_hit")} == {
        "requests": 2,
        "images": 2,
        "generated": 1,
        "cache_hit": 1,
    }
    assert [(b["applies_to"], b["images_limit"]) for b in report["budget"]] == [("user", 50)]


async def test_the_allowlist_keeps_strangers_out(
    tmp_path: Path,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
) -> None:
    chat, telegram_url = telegram
    settings = make_settings(tmp_path, telegram_url, upstream[2], allowlist=[ANN])
    async with running_bot(settings) as (services, _):
        chat.feed_text(BOB, "/image a cat")
        chat.feed_text(ANN, "/image a cat")
        await chat.until(lambda: len(chat.calls_of("sendMessage")) == 2)
        listing = await services.keys.list_keys()
    assert chat.conversation(BOB) == [("message", "1", replies.not_allowed(BOB))]
    assert chat.conversation(ANN) == [("message", "1", queued(1, "builtin"))]
    assert [key.user_name for key in listing] == [f"telegram:{ANN}"]


async def test_a_flooding_user_hits_their_own_rate_limit(
    tmp_path: Path,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
) -> None:
    chat, telegram_url = telegram
    settings = make_settings(tmp_path, telegram_url, upstream[2], requests_per_minute=2)
    async with running_bot(settings):
        for n in range(3):
            chat.feed_text(ANN, f"/image cat number {n}")
        chat.feed_text(BOB, "/image a dog")
        await chat.until(lambda: len(chat.calls_of("sendMessage")) == 4)
    said = chat.conversation(ANN)
    assert said[:2] == [
        ("message", "1", queued(1, "builtin")),
        ("message", "2", queued(2, "builtin")),
    ]
    assert re.fullmatch(
        r"⏱ Slow down: too many requests\. Try again in \d+ seconds\.", said[2][2]
    ), said[2]
    assert chat.conversation(BOB) == [("message", "1", queued(3, "builtin"))]  # Bob is not limited


async def test_a_content_policy_refusal_asks_to_rephrase(
    settings: Settings,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
) -> None:
    chat, _ = telegram
    provider, gate, _ = upstream
    gate.release("something forbidden")
    provider.faults.next(Fault.safety())
    async with running_bot(settings) as (services, _), embedded_workers(services):
        chat.feed_text(ANN, "/image=gpt-image-1=something forbidden")
        await chat.until(lambda: "rephrase" in (chat.status_history(ANN, "1") or [""])[-1])
    assert chat.status_history(ANN, "1")[-1] == (
        "🚫 gpt-image-1 refused this prompt under its content policy. "
        "Please rephrase it and try again."
    )


async def test_a_rejected_token_is_a_configuration_error_that_does_not_show_it(
    tmp_path: Path,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
) -> None:
    wrong = "999999:WRONG-TelegramBotToken-1a2b3c"
    settings = make_settings(tmp_path, telegram[1], upstream[2], token=wrong)
    async with build_services(settings) as services:
        with pytest.raises(ConfigurationError) as refused:
            async with TelegramBot(services).running():
                pass
    assert "TOKEN" in refused.value.message
    assert wrong not in str(refused.value)
    assert refused.value.__suppress_context__


async def test_enhance_on_shows_the_enhancing_stage_and_the_rewrite_and_off_stops_it(
    tmp_path: Path,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
    llm: tuple[FakeState, PromptGate, str],
) -> None:
    chat, telegram_url = telegram
    provider, images_gate, openai_url = upstream
    rewriter, llm_gate, chat_url = llm
    settings = make_settings(tmp_path, telegram_url, openai_url, enhancer_at(chat_url))
    fox, whale = "a red fox", "a blue whale"
    async with running_bot(settings) as (services, _bot), embedded_workers(services):
        chat.feed_text(ANN, "/help")
        chat.feed_text(ANN, "/enhance")
        chat.feed_text(ANN, "/enhance on")
        chat.feed_text(ANN, f"/image=gpt-image-1={fox}")
        await chat.until(lambda: chat.status_history(ANN, "4")[-1:] == [ENHANCING])
        llm_gate.release(fox)
        await chat.until(lambda: chat.status_history(ANN, "4")[-1] == generating("gpt-image-1"))
        images_gate.release(enhanced(fox))
        await chat.until(lambda: chat.status_history(ANN, "4")[-1] == replies.DONE)

        chat.feed_text(ANN, f"/image=gpt-image-1={fox}")  # the same prompt: the cache answers
        await chat.until(lambda: chat.status_history(ANN, "6")[-1:] == [replies.DONE])

        chat.feed_text(ANN, "/enhance off")
        chat.feed_text(ANN, f"/image=gpt-image-1={whale}")
        await chat.until(lambda: chat.status_history(ANN, "9")[-1:] == [generating("gpt-image-1")])
        images_gate.release(whale)
        await chat.until(lambda: chat.status_history(ANN, "9")[-1] == replies.DONE)
        chosen_off = await services.keys.find_user(f"telegram:{ANN}")
        chat.feed_text(ANN, "/enhance default")
        await chat.until(lambda: len(chat.calls_of("sendMessage")) == 8)
        chosen_default = await services.keys.find_user(f"telegram:{ANN}")

    said = chat.conversation(ANN)
    help_text = said[0][2]
    assert "/enhance on|off|default" in help_text
    assert help_text == replies.help_text("builtin", enhancer=True)
    assert said[1] == (
        "message",
        "2",
        "Prompt enhancement follows each model's default (off for every model). "
        "/enhance on or /enhance off to choose for yourself.",
    )
    assert said[2][:2] == ("message", "3")
    assert said[2][2].startswith("✍️ Prompt enhancement is on")
    # queued -> enhancing -> generating -> the photo, captioned with the rewrite
    assert chat.status_history(ANN, "4") == [
        queued(1, "gpt-image-1"),
        ENHANCING,
        generating("gpt-image-1"),
        replies.DONE,
    ]
    photos = [entry for entry in said if entry[0] == "photo"]
    assert photos == [
        ("photo", f"{enhanced(fox)}\n\ngpt-image-1 · new image"),
        ("photo", f"{enhanced(fox)}\n\ngpt-image-1 · from the cache"),
        ("photo", f"{whale}\n\ngpt-image-1 · new image"),
    ]
    # a cache hit asks no LLM: it may show its first stage for an instant, never generating
    assert chat.status_history(ANN, "6") in (
        [queued(1, "gpt-image-1"), replies.DONE],
        [queued(1, "gpt-image-1"), ENHANCING, replies.DONE],
    )
    assert chat.status_history(ANN, "8")[0].startswith("Prompt enhancement is off")
    assert chat.status_history(ANN, "9") == [
        queued(1, "gpt-image-1"),
        generating("gpt-image-1"),
        replies.DONE,
    ]
    assert [chat_prompt(json.loads(call.body)) for call in rewriter.calls] == [fox]
    assert [json.loads(call.body)["prompt"] for call in provider.calls] == [enhanced(fox), whale]
    assert (
        chat.calls_of("sendMessage")[-1]
        .params["text"]
        .startswith("Prompt enhancement follows each model's default")
    )
    # the choice is kept on the user (it outlives the bot's process), and can be undone
    assert chosen_off is not None
    assert chosen_off.enhance_prompt is False
    assert chosen_default is not None
    assert chosen_default.enhance_prompt is None


async def test_the_models_default_applies_until_the_user_chooses(
    tmp_path: Path,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
    llm: tuple[FakeState, PromptGate, str],
) -> None:
    chat, telegram_url = telegram
    _, images_gate, openai_url = upstream
    rewriter, llm_gate, chat_url = llm
    enhancer = {**enhancer_at(chat_url), "models": ["gpt-image-1"]}
    settings = make_settings(tmp_path, telegram_url, openai_url, enhancer)
    llm_gate.release("a barn")
    images_gate.release(enhanced("a barn"), "a barn")
    async with running_bot(settings) as (services, _bot), embedded_workers(services):
        chat.feed_text(ANN, "/enhance")
        chat.feed_text(ANN, "/image=gpt-image-1=a barn")
        await chat.until(lambda: len(chat.calls_of("sendPhoto")) == 1)
        chat.feed_text(BOB, "/enhance off")
        chat.feed_text(BOB, "/image=gpt-image-1=a barn")
        await chat.until(lambda: len(chat.calls_of("sendPhoto")) == 2)
    assert chat.conversation(ANN)[0][2] == (
        "Prompt enhancement follows each model's default (on for gpt-image-1, off for the "
        "others). /enhance on or /enhance off to choose for yourself."
    )
    assert photos_in(chat, ANN) == [("photo", f"{enhanced('a barn')}\n\ngpt-image-1 · new image")]
    # Bob said no: his request is another cache entry, drawn from his own words
    assert photos_in(chat, BOB) == [("photo", "a barn\n\ngpt-image-1 · new image")]
    assert len(rewriter.calls) == 1


async def test_with_the_llm_down_the_prompt_as_written_is_drawn_and_the_fallback_recorded(
    tmp_path: Path,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
) -> None:
    chat, telegram_url = telegram
    _, images_gate, openai_url = upstream
    with FakeServer(build_chat_fake(FakeState())) as gone:
        dead = gone.base_url  # nothing listens there any more
    settings = make_settings(tmp_path, telegram_url, openai_url, enhancer_at(dead))
    images_gate.release("a green owl")
    async with running_bot(settings) as (services, bot), embedded_workers(services):
        chat.feed_text(ANN, "/enhance on")
        chat.feed_text(ANN, "/image=gpt-image-1=a green owl")
        await chat.until(lambda: chat.status_history(ANN, "2")[-1:] == [replies.DONE])
        principal = await bot.principal_for(ANN)
        user = await key_of(services, principal.user_name)
        admin = await key_of(services, "root", Role.ADMIN)
        async with http_client(services) as http:
            (image,) = (await http.get("/v1/images", headers=user)).json()["data"]
            detail = (await http.get(f"/v1/images/{image['id']}", headers=user)).json()
            generation_id = detail["generation_id"]
            generation = (await http.get(f"/v1/generations/{generation_id}", headers=user)).json()
            events = await http.get(
                "/v1/events", params={"generation_id": generation_id}, headers=admin
            )

    assert photos_in(chat, ANN) == [("photo", "a green owl\n\ngpt-image-1 · new image")]
    history = chat.status_history(ANN, "2")
    assert history[0] == queued(1, "gpt-image-1")
    assert history[-1] == replies.DONE
    assert set(history[1:-1]) <= {ENHANCING, generating("gpt-image-1")}
    assert generation["outcome"] == "generated"
    assert generation["enhanced_prompt"] is None
    assert generation["prompt_enhancement"] == {"status": "fallback", "reason": "error"}
    assert "prompt_enhancement_fallback" in [event["type"] for event in events.json()["data"]]


def webhook_update(chat: TelegramState, user_id: int, text: str) -> bytes:
    return json.dumps(chat.text_update(user_id, text)).encode()


async def test_webhook_mode_answers_updates_posted_with_the_secret_and_refuses_others(
    tmp_path: Path,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
) -> None:
    chat, telegram_url = telegram
    _, images_gate, openai_url = upstream
    port, secret = free_port(), "s3cret-Token_for-the-webhook"
    url = f"http://127.0.0.1:{port}/telegram/updates"
    settings = make_settings(
        tmp_path,
        telegram_url,
        openai_url,
        mode="webhook",
        webhook_url=url,
        webhook_port=port,
        webhook_secret=secret,
    )
    json_body = {"Content-Type": "application/json"}
    async with (
        running_bot(settings) as (services, _bot),
        embedded_workers(services),
        httpx.AsyncClient() as http,
    ):
        (registered,) = chat.calls_of("setWebhook")
        refused = [
            await http.post(url, content=webhook_update(chat, ANN, "/help"), headers=json_body),
            await http.post(
                url,
                content=webhook_update(chat, ANN, "/help"),
                headers={**json_body, "X-Telegram-Bot-Api-Secret-Token": "guessed"},
            ),
        ]
        signed = {**json_body, "X-Telegram-Bot-Api-Secret-Token": secret}
        elsewhere = await http.post(
            f"http://127.0.0.1:{port}/updates",
            content=webhook_update(chat, ANN, "/help"),
            headers=signed,
        )
        accepted = [
            await http.post(url, content=webhook_update(chat, ANN, text), headers=signed)
            for text in ("/help", "/image=gpt-image-1=a red fox")
        ]
        await chat.until(lambda: chat.status_history(ANN, "2")[-1:] == [generating("gpt-image-1")])
        images_gate.release("a red fox")
        await chat.until(lambda: chat.status_history(ANN, "2")[-1] == replies.DONE)

    assert registered.params["url"] == url
    assert registered.params["secret_token"] == secret
    assert json.loads(registered.params["allowed_updates"]) == ["message"]
    assert chat.calls_of("getUpdates") == []  # no polling in webhook mode
    assert [r.status_code for r in refused] == [403, 403]
    assert elsewhere.status_code == 404  # the bot listens on the URL's own path
    assert [r.status_code for r in accepted] == [200, 200]
    assert chat.conversation(ANN) == [
        ("message", "1", replies.help_text("builtin")),
        ("message", "2", queued(1, "gpt-image-1")),
        ("edit", "2", generating("gpt-image-1")),
        ("photo", "a red fox\n\ngpt-image-1 · new image"),
        ("edit", "2", replies.DONE),
    ]
    assert chat.pending_updates() == 0


async def test_a_webhook_without_a_configured_secret_gets_a_random_one(
    tmp_path: Path,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
) -> None:
    chat, telegram_url = telegram
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    settings = make_settings(
        tmp_path, telegram_url, upstream[2], mode="webhook", webhook_url=url, webhook_port=port
    )
    async with running_bot(settings), httpx.AsyncClient() as http:
        (registered,) = chat.calls_of("setWebhook")
        unsigned = await http.post(
            url,
            content=webhook_update(chat, ANN, "/help"),
            headers={"Content-Type": "application/json"},
        )
    assert len(registered.params["secret_token"]) >= 32
    assert unsigned.status_code == 403
    assert chat.conversation(ANN) == []


async def test_a_new_users_quota_stops_them_until_an_admin_raises_it(
    tmp_path: Path,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
) -> None:
    chat, telegram_url = telegram
    settings = make_settings(tmp_path, telegram_url, upstream[2], images_per_day=1)
    async with running_bot(settings) as (services, _), embedded_workers(services):
        chat.feed_text(ANN, "/image a cat")
        await chat.until(lambda: chat.status_history(ANN, "1")[-1:] == [replies.DONE])
        chat.feed_text(ANN, "/image a dog")
        await chat.until(lambda: "limit" in "".join(chat.status_history(ANN, "3")[-1:]))
        admin = await key_of(services, "root", Role.ADMIN)
        async with http_client(services) as http:
            raised = await http.put(
                f"/v1/users/telegram:{ANN}/limits", json={"images_per_day": 5}, headers=admin
            )
            secret = admin["Authorization"].removeprefix("Bearer ")
            await http.post("/signin", data={"api_key": secret})
            admin_page = await http.get(f"/admin/users/telegram:{ANN}")
        chat.feed_text(ANN, "/image a dog")
        await chat.until(lambda: chat.status_history(ANN, "4")[-1:] == [replies.DONE])
    assert chat.status_history(ANN, "3")[-1].startswith("💸 You have reached your limit.")
    assert "day" in chat.status_history(ANN, "3")[-1]
    assert raised.status_code == 200
    assert admin_page.status_code == 200  # the README's other way to raise them
    assert f"telegram:{ANN}" in admin_page.text
    assert [entry for entry in chat.conversation(ANN) if entry[0] == "photo"] == [
        ("photo", "a cat\n\nbuiltin · new image"),
        ("photo", "a dog\n\nbuiltin · new image"),
    ]


async def test_without_an_enhancer_there_is_nothing_to_toggle(
    settings: Settings, telegram: tuple[TelegramState, str]
) -> None:
    chat, _ = telegram
    async with running_bot(settings) as (services, _):
        chat.feed_text(ANN, "/help")
        chat.feed_text(ANN, "/enhance on")
        await chat.until(lambda: len(chat.calls_of("sendMessage")) == 2)
        user = await services.keys.find_user(f"telegram:{ANN}")
    assert chat.conversation(ANN) == [
        ("message", "1", replies.help_text("builtin")),
        ("message", "2", replies.NO_ENHANCER),
    ]
    assert "/enhance" not in replies.help_text("builtin")
    assert user is None  # nothing was kept


async def test_the_readme_steps_run_the_bot_as_its_own_process(
    tmp_path: Path, telegram: tuple[TelegramState, str]
) -> None:
    """Steps 2 and 3 of the README: the token (and an allowlist) in the environment, then
    ``imagegate bot telegram``, which answers until SIGTERM."""
    chat, telegram_url = telegram
    env = environment(
        tmp_path / "data",
        IMAGEGATE_TELEGRAM__TOKEN=TOKEN,
        IMAGEGATE_TELEGRAM__ALLOWLIST=f"[{ANN}]",
        IMAGEGATE_TELEGRAM__BASE_URL=telegram_url,
        IMAGEGATE_TELEGRAM__POLL_TIMEOUT_SECONDS="1",
        IMAGEGATE_JOBS__POLL_SECONDS="0.05",
    )
    bot = await asyncio.create_subprocess_exec(
        *IMAGEGATE,
        "bot",
        "telegram",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        chat.feed_text(BOB, "/image a cat")
        chat.feed_text(ANN, "/image a cat")
        await chat.until(lambda: len(chat.calls_of("sendPhoto")) == 1, seconds=60)
        await chat.until(lambda: chat.status_history(ANN, "1")[-1:] == [replies.DONE])
    finally:
        bot.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            said, complained = await bot.communicate()
    out, err = said.decode(), complained.decode()
    assert bot.returncode == 0, err
    assert "telegram bot: running" in err
    assert TOKEN not in out + err
    assert chat.conversation(BOB) == [("message", "1", replies.not_allowed(BOB))]
    assert photos_in(chat, ANN) == [("photo", "a cat\n\nbuiltin · new image")]


async def test_a_provider_rate_limit_past_the_jobs_patience_says_how_long_to_wait(
    tmp_path: Path,
    telegram: tuple[TelegramState, str],
    upstream: tuple[FakeState, PromptGate, str],
) -> None:
    chat, telegram_url = telegram
    provider, gate, openai_url = upstream
    settings = make_settings(tmp_path, telegram_url, openai_url)
    settings.jobs.max_rate_limit_wait_seconds = 30
    provider.faults.next(Fault.error(429, retry_after=120))
    async with running_bot(settings) as (services, _), embedded_workers(services):
        chat.feed_text(ANN, "/image=gpt-image-1=a kite")
        await chat.until(lambda: chat.status_history(ANN, "1")[-1:] == [generating("gpt-image-1")])
        gate.release("a kite")
        await chat.until(lambda: len(chat.status_history(ANN, "1")) == 3)
        user = await key_of(services, f"telegram:{ANN}")
        async with http_client(services) as http:
            (job,) = (await http.get("/v1/jobs", headers=user)).json()["data"]
    assert chat.status_history(ANN, "1") == [
        queued(1, "gpt-image-1"),
        generating("gpt-image-1"),
        "⏱ gpt-image-1 is busy. Please wait 120 seconds and try again.",
    ]
    assert job["status"] == "failed"
    assert job["error"]["code"] == "upstream_rate_limited"
    assert job["error"]["message"].endswith("Try again in 120s.")
