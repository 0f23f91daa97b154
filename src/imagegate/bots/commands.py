"""What a chat message asks for: pure parsing, no chat library.

The seed's syntax is kept exactly: ``/image=<model>=<prompt>``. Besides it ``/image <prompt>``
(the default model), ``/enhance on|off|default`` (the user's prompt-enhancement choice; bare,
it shows the choice), ``/models``, ``/usage`` and ``/help`` (``/start`` is Telegram's first
message and gets the help). A command may carry the bot's name (``/image@my_bot ...``), as
Telegram writes it in groups.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

IMAGE_SYNTAX = "/image=<model>=<prompt>"
ENHANCE_SYNTAX = "/enhance on|off|default"
_COMMAND = re.compile(r"^/(?P<name>[A-Za-z0-9_]+)(?:@[A-Za-z0-9_]+)?(?P<rest>.*)$", re.DOTALL)


class Question(enum.StrEnum):
    MODELS = "models"
    USAGE = "usage"
    HELP = "help"


@dataclass(frozen=True, slots=True)
class ImageCommand:
    prompt: str
    model: str | None = None
    """None: the bot's default model."""


@dataclass(frozen=True, slots=True)
class EnhanceCommand:
    """``/enhance on|off|default``; ``show`` for a bare ``/enhance``."""

    choice: bool | None = None
    """True/False: always/never enhance this user's prompts; None: each model's default."""
    show: bool = False


@dataclass(frozen=True, slots=True)
class BadCommand:
    """Something the bot cannot act on, with the short reason it answers."""

    reason: str


Command = ImageCommand | EnhanceCommand | Question | BadCommand

_QUESTIONS = {"models": Question.MODELS, "usage": Question.USAGE, "help": Question.HELP}


def parse(text: str) -> Command:
    match = _COMMAND.match(text.strip())
    if match is None:
        return BadCommand(f"Send {IMAGE_SYNTAX} or /image <prompt> to draw; /help for more.")
    name, rest = match.group("name").lower(), match.group("rest")
    if name == "image":
        return _image(rest)
    if name == "enhance":
        return _enhance(rest)
    if name == "start":
        return Question.HELP
    question = _QUESTIONS.get(name)
    if question is None:
        return BadCommand(f"Unknown command /{name}. Try /help.")
    return question


def _image(rest: str) -> Command:
    if rest.startswith("="):
        model, sep, prompt = rest[1:].partition("=")
        model, prompt = model.strip(), prompt.strip()
        if not sep or not model or not prompt or any(c.isspace() for c in model):
            return BadCommand(f"Write it as {IMAGE_SYNTAX}, e.g. /image=builtin=a red fox.")
        return ImageCommand(prompt=prompt, model=model)
    if rest and not rest[0].isspace():
        return BadCommand(f"Write it as {IMAGE_SYNTAX} or /image <prompt>.")
    prompt = rest.strip()
    if not prompt:
        return BadCommand(f"What should I draw? Send /image <prompt> or {IMAGE_SYNTAX}.")
    return ImageCommand(prompt=prompt)


_ENHANCE_CHOICES = {"on": True, "off": False, "default": None}


def _enhance(rest: str) -> Command:
    word = rest.strip().lower()
    if not word:
        return EnhanceCommand(show=True)
    if rest[0].isspace() and word in _ENHANCE_CHOICES:
        return EnhanceCommand(_ENHANCE_CHOICES[word])
    return BadCommand(f"Write it as {ENHANCE_SYNTAX}, e.g. /enhance on.")
