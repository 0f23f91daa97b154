"""Prompt enhancement: an LLM rewrites the prompt before it reaches the image provider.

It never fails a generation. A timeout, an error, a refusal, an answer that is empty after
cleaning or longer than ``max_output_chars``: the user's own prompt goes to the provider and the
generation records a ``prompt_enhancement_fallback`` event saying why. A rewrite used is
recorded as ``prompt_enhanced``, stored as the generation's ``enhanced_prompt`` and returned as
each image's ``revised_prompt``.

It runs only for a request that calls a provider (a cache miss that leads its single-flight),
once the request has its turn in the model's line, so a cache hit costs no LLM call. The cache
key is made from the user's original prompt (plus the enhancement flag), never from the rewrite:
the same prompt asked twice is a cache hit although two rewrites would differ.

Answers are cleaned before use (``clean_rewrite``): markdown, code fences, surrounding quotes,
"Sure!" / "Here is the enhanced prompt:" preambles and "Let me know..." codas are removed and
whitespace collapsed; a rewrite longer than the model's prompt limit is cut at a word boundary.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from imagegate.catalog import ModelSpec
from imagegate.errors import ImagegateError
from imagegate.fingerprint import normalize_prompt
from imagegate.models import Event, Generation, NormalizedRequest
from imagegate.providers.base import ChatModel
from imagegate.settings import EnhancerSettings

log = logging.getLogger(__name__)

ENHANCED = "prompt_enhanced"
FALLBACK = "prompt_enhancement_fallback"
_GRACE_SECONDS = 1.0
"""The chat client bounds its own call by ``timeout_seconds``; this outer bound (a little
longer) only guards against a client that does not."""

_FENCE = re.compile(r"```[^\n`]*\n?(.*?)\n?```", re.DOTALL)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*{1,3}|_{2,3})(?=\S)(.+?)(?<=\S)\1", re.DOTALL)
_LINE_MARKUP = re.compile(r"^\s{0,3}(?:#{1,6}\s+|>\s?|[-*+]\s+|\d+[.)]\s+)", re.MULTILINE)
_INLINE_CODE = re.compile(r"`([^`]*)`")
_LEADING_INTERJECTION = re.compile(
    r"^(?:sure|certainly|of course|absolutely|okay|ok|great|alright|happy to help)\b[^.!:\n]*"
    r"[.!:,]\s*",
    re.IGNORECASE,
)
_LABEL = re.compile(
    r"^(?:here(?:'s| is| are)\b[^:\n]{0,80}|(?:an? |the |your )?(?:enhanced|improved|revised|"
    r"rewritten|refined|new|final|updated)?\s*(?:image )?prompt\b[^:\n]{0,40})\s*:\s*",
    re.IGNORECASE,
)
_CODA = re.compile(
    r"^(?:let me know|i hope|feel free|hope this|would you like|if you(?:'d| would) like|"
    r"this (?:prompt|version|rewrite)|note:)",
    re.IGNORECASE,
)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "„": "“", "「": "」"}


def clean_rewrite(text: str) -> str:
    """The prompt inside an LLM's answer: markup, quotes, preambles and codas removed, one
    paragraph of collapsed whitespace. "" when nothing is left."""
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cs") or c in "\n\t")
    fenced = _FENCE.search(text)
    if fenced and fenced.group(1).strip():
        text = fenced.group(1)
    text = text.replace("```", "")
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    while len(paragraphs) > 1 and _CODA.match(_strip_markup(paragraphs[-1])):
        paragraphs.pop()
    text = _strip_markup("\n\n".join(paragraphs))
    for _ in range(3):  # "Sure! Here is the enhanced prompt: "..."" peels in a few passes
        before = text
        text = _LEADING_INTERJECTION.sub("", text, count=1).strip()
        text = _LABEL.sub("", text, count=1).strip()
        text = _unquoted(text)
        if text == before:
            break
    return normalize_prompt(text)


def _strip_markup(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _LINE_MARKUP.sub("", text)
    for _ in range(2):  # nested emphasis: ***a*** or **_a_**
        text = _EMPHASIS.sub(r"\2", text)
    return text.strip()


def _unquoted(text: str) -> str:
    while len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        inner = text[1:-1].strip()
        if text[0] in inner:  # "a" and "b": two quoted parts, not one quoted whole
            break
        text = inner
    return text


def cap_at_word(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at the last space if there is one."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:-")


@dataclass(frozen=True, slots=True)
class Enhancement:
    """What one request's enhancement step decided: the request the provider gets."""

    request: NormalizedRequest
    """The prompt the provider is given (the rewrite, or the user's own)."""
    enhanced_prompt: str | None = None
    """The rewrite used; None when the original went to the provider."""
    event: Event | None = None
    """``prompt_enhanced`` or ``prompt_enhancement_fallback``; None when not asked for."""

    @property
    def fell_back(self) -> bool:
        return self.event is not None and self.event.type == FALLBACK

    def recorded_on(self, draft: Generation) -> Generation:
        """``draft`` with the rewrite and the event, so failures after this keep them too."""
        if self.event is None:
            return draft
        return replace(
            draft, enhanced_prompt=self.enhanced_prompt, events=(*draft.events, self.event)
        )


class PromptEnhancer:
    """``chat`` None: no enhancer is configured; nothing is ever enhanced."""

    def __init__(self, chat: ChatModel | None, settings: EnhancerSettings) -> None:
        self._chat = chat
        self._settings = settings
        self._default_models = frozenset(settings.models)

    @property
    def configured(self) -> bool:
        return self._chat is not None

    def wanted(self, spec: ModelSpec, asked: bool | None) -> bool:
        """Whether a request for ``spec`` is enhanced: as it asks, else the model's default.
        Without an enhancer, never (an explicit ask is answered with the original prompt)."""
        if self._chat is None:
            return False
        if asked is not None:
            return asked
        return spec.enhance_prompt or spec.name in self._default_models

    def unavailable(self, asked: bool | None) -> tuple[Event, ...]:
        """The event of a request that asked for enhancement where none is configured: it is
        answered with the original prompt, like any other fallback, not refused."""
        if asked and self._chat is None:
            return (Event(FALLBACK, datetime.now(UTC), {"reason": "not_configured"}),)
        return ()

    async def apply(
        self,
        spec: ModelSpec,
        request: NormalizedRequest,
        on_enhancing: Callable[[], None] | None = None,
    ) -> Enhancement:
        """The request the provider gets; never raises but for cancellation. ``on_enhancing``
        hears when the LLM is asked (a front end's "enhancing..." status)."""
        if not request.enhance_prompt or self._chat is None:
            return Enhancement(request)
        if on_enhancing is not None:
            on_enhancing()
        chat = self._chat
        started = time.perf_counter()
        details: dict[str, object] = {"model": chat.model}

        def fallback(reason: str, **more: object) -> Enhancement:
            data = {"reason": reason, **details, "latency_ms": _ms(started), **more}
            log.warning(
                "prompt enhancement fell back to the original prompt",
                extra={"reason": reason, "model": spec.name, **more},
            )
            return Enhancement(request, None, Event(FALLBACK, datetime.now(UTC), data))

        try:
            async with asyncio.timeout(self._settings.timeout_seconds + _GRACE_SECONDS):
                answer = await chat.complete(request.prompt)
        except TimeoutError:
            return fallback("timeout")
        except ImagegateError as exc:
            return fallback("timeout" if "timeout" in exc.code else "error", code=exc.code)
        except Exception as exc:  # a bug in a client must not fail the generation either
            return fallback("error", code=type(exc).__name__)
        if answer.refused or answer.finish_reason == "content_filter":
            return fallback("refused")
        if answer.finish_reason == "length":
            return fallback("too_long")
        text = clean_rewrite(answer.text)
        if not text:
            return fallback("empty")
        if len(text) > self._settings.max_output_chars:
            return fallback("too_long", chars=len(text))
        capped = cap_at_word(text, spec.max_prompt_chars)
        data = {**details, "latency_ms": _ms(started), "chars": len(capped)}
        if capped != text:
            data["capped"] = True
        return Enhancement(
            replace(request, prompt=capped), capped, Event(ENHANCED, datetime.now(UTC), data)
        )


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
