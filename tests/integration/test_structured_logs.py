"""A real gateway's log lines: JSON, one object per line, the request id on request lines,
no keys and no prompts unless IMAGEGATE_LOG__PROMPTS allows them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from tests.support.processes import ServerProcess, run_cli

PROMPT = "a lighthouse drawn in violet ink"


def _serve_and_call(tmp_path: Path, **env: str) -> tuple[list[dict[str, object]], str, str]:
    data_dir = tmp_path / "data"
    created = run_cli("keys", "create", "--name", "logs", data_dir=data_dir)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    server = ServerProcess(data_dir, env={"IMAGEGATE_SERVER__ACCESS_LOG": "true", **env}).start()
    try:
        headers = {"Authorization": f"Bearer {key}", "X-Request-Id": "trace-logs-1"}
        made = httpx.post(
            f"{server.base_url}/v1/images/generations",
            json={"model": "builtin", "prompt": PROMPT, "size": "256x256"},
            headers=headers,
            timeout=30,
        )
        assert made.status_code == 200, made.text
        refused = httpx.get(f"{server.base_url}/v1/models",
                            headers={"Authorization": f"Bearer {key}x"})  # fmt: skip
        assert refused.status_code == 401
    finally:
        server.stop()
    text = server.log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return lines, text, key


def test_log_lines_are_json_with_the_request_id_and_no_key(tmp_path: Path) -> None:
    lines, text, key = _serve_and_call(tmp_path)
    assert lines, text
    for line in lines:
        assert {"event", "level", "timestamp", "logger"} <= line.keys(), line
    access = [line for line in lines if "/v1/images/generations" in str(line["event"])]
    assert access, text
    assert access[0]["request_id"] == "trace-logs-1"
    assert access[0]["logger"] == "uvicorn.access"
    json_text = "\n".join(json.dumps(line) for line in lines)
    assert key not in json_text
    assert key[:12] not in json_text or key[:12] == "ig_"  # not even the secret's start


def test_console_format_is_plain_text(tmp_path: Path) -> None:
    lines, text, _ = _serve_and_call(tmp_path, IMAGEGATE_LOG__FORMAT="console")
    assert lines == []
    assert "/v1/images/generations" in text
