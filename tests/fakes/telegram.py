"""Loopback fake of the Telegram Bot API: the methods the bot calls, over real HTTP.

    state = TelegramState(token)
    with FakeServer(build_telegram_fake(state)) as server:
        ... run the bot with base_url=server.base_url ...
        state.feed_text(user_id=1001, text="/image a red fox")
        await state.until(lambda: len(state.calls_of("sendPhoto")) == 1)

It answers ``getMe``, ``setWebhook``, ``deleteWebhook``, ``getUpdates`` (long polling over
the updates fed, confirmed by ``offset`` as Telegram does), ``sendMessage``,
``editMessageText`` and ``sendPhoto`` in the Bot API's wire format (form fields, JSON-encoded
where not strings; multipart for the photo), and records every call but ``getMe`` and
``getUpdates``. A wrong token gets Telegram's 401. For webhook mode, ``text_update`` makes the
update a test posts to the bot itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BOT_USER = {"id": 424242, "is_bot": True, "first_name": "imagegate", "username": "imagegate_bot"}


@dataclass(frozen=True)
class BotCall:
    method: str
    params: dict[str, str]
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def chat_id(self) -> int:
        return int(self.params["chat_id"])


@dataclass
class TelegramState:
    """Shared by the test's thread and the fake's; every access holds the lock."""

    token: str
    calls: list[BotCall] = field(default_factory=list)
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _next_update: int = 1
    _next_message: dict[int, int] = field(default_factory=dict)
    _next_incoming: int = 10_000
    """Users' messages are numbered apart from the bot's, so the bot's ids do not depend on
    when its updates were fetched."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def feed_text(self, user_id: int, text: str, first_name: str = "Ann") -> None:
        """A private message from ``user_id``, delivered by ``getUpdates`` (long polling)."""
        update = self.text_update(user_id, text, first_name)
        with self._lock:
            self._updates.append(update)

    def text_update(self, user_id: int, text: str, first_name: str = "Ann") -> dict[str, Any]:
        """A private message from ``user_id`` as Telegram sends it (what a webhook is
        posted), numbered in turn; not delivered by ``getUpdates``."""
        with self._lock:
            message_id = self._next_incoming
            self._next_incoming += 1
            update_id = self._next_update
            self._next_update += 1
        entities = []
        if text.startswith("/"):
            length = len(text.split(maxsplit=1)[0].split("=", 1)[0])
            entities.append({"type": "bot_command", "offset": 0, "length": length})
        return {
            "update_id": update_id,
            "message": {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": user_id, "type": "private", "first_name": first_name},
                "from": {"id": user_id, "is_bot": False, "first_name": first_name},
                "text": text,
                "entities": entities,
            },
        }

    def calls_of(self, method: str) -> list[BotCall]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def pending_updates(self) -> int:
        with self._lock:
            return len(self._updates)

    def conversation(self, chat_id: int) -> list[tuple[str, ...]]:
        """What the bot did in one chat, in order: ``("message", id, text)``, ``("edit", id,
        text)`` and ``("photo", caption)``."""
        with self._lock:
            calls = [c for c in self.calls if "chat_id" in c.params and c.chat_id == chat_id]
        said: list[tuple[str, ...]] = []
        for call in calls:
            if call.method == "sendMessage":
                said.append(("message", call.params["_message_id"], call.params["text"]))
            elif call.method == "editMessageText":
                said.append(("edit", call.params["message_id"], call.params["text"]))
            elif call.method == "sendPhoto":
                said.append(("photo", call.params.get("caption", "")))
        return said

    def status_history(self, chat_id: int, message_id: str) -> list[str]:
        """The texts one status message showed, first to last."""
        return [
            entry[2]
            for entry in self.conversation(chat_id)
            if entry[0] in ("message", "edit") and entry[1] == message_id
        ]

    async def until(self, condition: Callable[[], bool], seconds: float = 20.0) -> None:
        """Wait for ``condition`` (a state the bot must reach), failing after ``seconds``."""
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"the bot never got there; it did: {self.calls}")
            await asyncio.sleep(0.02)

    # -- the fake's side ----------------------------------------------------------------------

    def _message_id(self, chat_id: int) -> int:
        self._next_message[chat_id] = self._next_message.get(chat_id, 0) + 1
        return self._next_message[chat_id]

    def _take_updates(self, offset: int | None) -> list[dict[str, Any]]:
        with self._lock:
            if offset is not None:  # Telegram forgets what the bot has confirmed
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            return list(self._updates)

    def _record(self, call: BotCall, new_message: bool) -> int | None:
        with self._lock:
            message_id = self._message_id(call.chat_id) if new_message else None
            if message_id is not None:
                call.params["_message_id"] = str(message_id)
            self.calls.append(call)
            return message_id


def _message(chat_id: int, message_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": "private"},
        "from": BOT_USER,
        **extra,
    }


def _ok(result: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def build_telegram_fake(state: TelegramState) -> Starlette:
    async def endpoint(request: Request) -> JSONResponse:
        if request.path_params["token"] != state.token:
            return JSONResponse(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, 401
            )
        method = request.path_params["method"]
        form = await request.form()
        params: dict[str, str] = {}
        files: dict[str, bytes] = {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                files[name] = await value.read()
            else:
                params[name] = value
        if method == "getMe":
            return _ok(BOT_USER)
        if method in ("deleteWebhook", "setWebhook"):
            state._record(BotCall(method, params), new_message=False)
            return _ok(True)
        if method == "setMyCommands":
            return _ok(True)
        if method == "getUpdates":
            offset = int(params["offset"]) if "offset" in params else None
            wait = min(float(params.get("timeout", "0")), 2.0)
            deadline = time.monotonic() + wait
            # Fed from the test's thread and event loop: an asyncio.Event cannot cross them.
            while not (updates := state._take_updates(offset)) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            return _ok(updates)
        call = BotCall(method, params, files)
        if method == "sendMessage":
            message_id = state._record(call, new_message=True)
            assert message_id is not None
            return _ok(_message(call.chat_id, message_id, text=params["text"]))
        if method == "editMessageText":
            state._record(call, new_message=False)
            return _ok(_message(call.chat_id, int(params["message_id"]), text=params["text"]))
        if method == "sendPhoto":
            message_id = state._record(call, new_message=True)
            assert message_id is not None
            photo = [
                {
                    "file_id": f"photo-{message_id}",
                    "file_unique_id": f"unique-{message_id}",
                    "width": 1024,
                    "height": 1024,
                }
            ]
            return _ok(_message(call.chat_id, message_id, photo=photo, caption=params["caption"]))
        return JSONResponse(
            {"ok": False, "error_code": 404, "description": f"Not Found: method {method}"}, 404
        )

    return Starlette(routes=[Route("/bot{token}/{method}", endpoint, methods=["GET", "POST"])])
