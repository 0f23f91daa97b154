"""Every command, run as a real process, refuses bad settings with one clear message and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.processes import environment, run_cli

COMMANDS = [
    ("serve", "--port", "1"),
    ("worker",),
    ("migrate",),
    ("keys", "list"),
    ("keys", "create", "--name", "x"),
    ("usage",),
    ("generate", "a cat", "-o", "{tmp}/cat.png"),
]


def _bad(kind: str, tmp_path: Path) -> tuple[dict[str, str], list[str]]:
    """Environment additions for one kind of mistake, and what the message must name."""
    config = tmp_path / "imagegate.yaml"
    if kind == "wrong type":
        return {"IMAGEGATE_DATABASE__POOL_SIZE": "lots"}, [
            "IMAGEGATE_DATABASE__POOL_SIZE",
            "'lots'",
            "valid integer",
            "database.pool_size",
        ]
    if kind == "unknown backend":
        return {"IMAGEGATE_STORAGE__BACKEND": "ftp"}, [
            "IMAGEGATE_STORAGE__BACKEND",
            "'local' or 's3'",
            "Fix",
        ]
    if kind == "invalid yaml":
        config.write_text("routes:\n  fast: [1\n", "utf-8")
        return {"IMAGEGATE_CONFIG_FILE": str(config)}, [str(config), "not valid YAML", "line"]
    config.write_text("routes:\n  fast:\n    - model: no-such-model\n", "utf-8")
    return {"IMAGEGATE_CONFIG_FILE": str(config)}, [
        "routes.fast.targets[0].model",
        "'no-such-model' is not in the model catalogue",
    ]


KINDS = ["wrong type", "unknown backend", "invalid yaml", "unknown route target"]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_exits_2_with_the_setting_named(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    kind = KINDS[COMMANDS.index(command) % len(KINDS)]
    extra, expected = _bad(kind, tmp_path)
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in command]
    result = run_cli(*args, data_dir=tmp_path, env=environment(tmp_path / "data", **extra))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    for fragment in expected:
        assert fragment in result.stderr
    assert not (tmp_path / "cat.png").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_each_mistake_is_refused_by_migrate(kind: str, tmp_path: Path) -> None:
    extra, expected = _bad(kind, tmp_path)
    result = run_cli("migrate", data_dir=tmp_path, env=environment(tmp_path / "data", **extra))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in expected:
        assert fragment in result.stderr
