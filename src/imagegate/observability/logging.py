"""Structured logs: every line (imagegate's, uvicorn's, libraries') rendered by structlog.

The standard library's loggers stay the API (modules use ``logging.getLogger``); a
``ProcessorFormatter`` on the root handler renders their records as JSON (or readable console
lines) with the request id of the request being served. Secrets never reach the output: known
secret values from the settings, and anything shaped like an imagegate key or a bearer token,
are replaced before rendering.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from imagegate.settings import LogSettings, Settings

request_id_var: ContextVar[str | None] = ContextVar("imagegate_request_id", default=None)

REDACTED = "[redacted]"
_SHAPED_SECRETS = re.compile(r"ig_[A-Za-z0-9_-]{20,}|(?i:bearer)\s+[^\s\"',]+")


def _add_request_id(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    request_id = request_id_var.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


class _Redactor:
    """Replaces configured secret values and key- or token-shaped strings in every field."""

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _SHAPED_SECRETS.sub(REDACTED, text)

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        for name, value in event.items():
            if name.startswith("_"):  # structlog's own bookkeeping (the LogRecord)
                continue
            if isinstance(value, str):
                event[name] = self.scrub(value)
            elif value is not None and not isinstance(value, int | float | bool):
                event[name] = self.scrub(str(value))
        return event


def _drop_color_message(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message
    return event


def _drop_prompts(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for name in ("prompt", "revised_prompt", "negative_prompt", "enhanced_prompt"):
        if name in event:
            event[name] = REDACTED
    return event


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret value the settings hold (provider keys, tokens), for redaction."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if hasattr(value, "get_secret_value"):
            found.append(str(value.get_secret_value()))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif hasattr(value, "__pydantic_fields__"):
            for name in type(value).__pydantic_fields__:
                walk(getattr(value, name))

    walk(settings)
    return found


def configure_logging(settings: Settings) -> None:
    """Route every log record through structlog's renderer (call once, before serving)."""
    options: LogSettings = settings.log
    processors: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_id,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
    ]
    if not options.prompts:
        processors.append(_drop_prompts)
    processors.append(structlog.processors.format_exc_info)
    processors.append(_Redactor(configured_secrets(settings)))
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if options.format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=processors,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(options.level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
