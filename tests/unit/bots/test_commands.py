"""What a chat message asks for: the seed's ``/image=<model>=<prompt>`` and the rest."""

from __future__ import annotations

import pytest

from imagegate.bots.commands import (
    BadCommand,
    Command,
    EnhanceCommand,
    ImageCommand,
    Question,
    parse,
)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("/image=dall-e-3=a red fox", ImageCommand("a red fox", "dall-e-3")),
        ("/image=dall-e-3= a = b ", ImageCommand("a = b", "dall-e-3")),
        ("/image a red fox", ImageCommand("a red fox")),
        ("/image@imagegate_bot a red fox", ImageCommand("a red fox")),
        ("/enhance on", EnhanceCommand(True)),
        ("/enhance OFF", EnhanceCommand(False)),
        ("/enhance default", EnhanceCommand(None)),
        ("/enhance", EnhanceCommand(show=True)),
        ("/enhance@imagegate_bot on", EnhanceCommand(True)),
        ("/models", Question.MODELS),
        ("/usage", Question.USAGE),
        ("/start", Question.HELP),
        ("/help", Question.HELP),
    ],
)
def test_commands_are_understood(text: str, command: Command) -> None:
    assert parse(text) == command


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/image=builtin", "Write it as /image=<model>=<prompt>"),
        ("/image=two words=a cat", "Write it as /image=<model>=<prompt>"),
        ("/image", "What should I draw?"),
        ("/imagine a cat", "Unknown command /imagine"),
        ("/enhance maybe", "Write it as /enhance on|off|default"),
        ("/enhanceon", "Unknown command /enhanceon"),
        ("a cat", "Send /image=<model>=<prompt>"),
    ],
)
def test_bad_commands_get_a_reason_naming_the_valid_choice(text: str, says: str) -> None:
    command = parse(text)
    assert isinstance(command, BadCommand)
    assert command.reason.startswith(says)
