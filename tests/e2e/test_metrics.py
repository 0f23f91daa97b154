"""GET /metrics scraped from a real ``imagegate serve`` after real traffic."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.processes import ServerProcess, run_cli

pytestmark = pytest.mark.e2e

TOKEN = "metrics-scraper-token"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_after_real_traffic(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    admin = run_cli("keys", "create", "--name", "ops", "--role", "admin", data_dir=data_dir)
    user = run_cli("keys", "create", "--name", "someone", data_dir=data_dir)
    assert admin.returncode == 0, admin.stderr
    admin_key, user_key = admin.stdout.strip(), user.stdout.strip()
    server = ServerProcess(data_dir, env={"IMAGEGATE_METRICS_TOKEN": TOKEN}).start()
    try:
        base = server.base_url
        body = {"model": "builtin", "prompt": "a secret lighthouse", "size": "256x256"}
        for _ in range(2):  # a miss, then a hit
            made = httpx.post(
                f"{base}/v1/images/generations",
                json=body,
                headers={"Authorization": f"Bearer {user_key}"},
                timeout=30,
            )
            assert made.status_code == 200, made.text
        assert httpx.get(f"{base}/v1/images/img_nope", headers={
            "Authorization": f"Bearer {user_key}"}).status_code == 404  # fmt: skip

        for headers in ({}, {"Authorization": f"Bearer {user_key}"}):
            assert httpx.get(f"{base}/metrics", headers=headers).status_code == 404
        # a wrong token or key is refused as on every keyed route
        assert (
            httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer wrong"}).status_code
            == 401
        )
        by_token = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        by_admin = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {admin_key}"})
        assert by_token.status_code == by_admin.status_code == 200
        assert by_token.headers["content-type"].startswith("text/plain")
        text = by_admin.text
    finally:
        server.stop()

    found = samples(text)
    post = frozenset({("route", "/v1/images/generations"), ("method", "POST"), ("status", "200")})
    assert found[("imagegate_http_request_duration_seconds_count", post)] == 2
    templates = {dict(labels).get("route") for name, labels in found if "http_request" in name}
    assert "/v1/images/{image_id}" in templates or any("{" in (t or "") for t in templates)
    assert not any("img_nope" in (t or "") for t in templates)  # templates, never raw paths
    assert found[("imagegate_cache_requests_total", frozenset({("result", "miss")}))] == 1
    assert found[("imagegate_cache_requests_total", frozenset({("result", "hit")}))] == 1
    generated = frozenset({("model", "builtin"), ("provider", "builtin"), ("outcome", "generated")})
    assert found[("imagegate_generation_duration_seconds_count", generated)] == 1
    assert any(name == "imagegate_upstream_attempts_total" and value == 1
               for (name, _), value in found.items())  # fmt: skip
    assert any(name == "imagegate_breaker_state" and dict(labels)["state"] == "closed"
               and value == 1 for (name, labels), value in found.items())  # fmt: skip
    assert any(name == "imagegate_queue_running" for name, _ in found)
    assert found[("imagegate_queue_wait_seconds_count", frozenset({("model", "builtin")}))] == 1
    for secret in (user_key, admin_key, TOKEN, "lighthouse"):  # no keys, no prompts
        assert secret not in text
