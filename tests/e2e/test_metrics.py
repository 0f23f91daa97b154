"""GET /metrics scraped from a real ``imagegate serve`` after real traffic."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.processes import ServerProcess, WorkerProcess, free_port, run_cli

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


def test_a_separate_metrics_bind_serves_metrics_without_a_key(tmp_path: Path) -> None:
    """IMAGEGATE_METRICS_BIND: the scraper's own port needs no key and sees the same registry as
    the API; the main port's /metrics stays hidden from everyone but admins."""
    data_dir = tmp_path / "data"
    user = run_cli("keys", "create", "--name", "someone", data_dir=data_dir)
    assert user.returncode == 0, user.stderr
    user_key = user.stdout.strip()
    metrics_port = free_port()
    bind = f"127.0.0.1:{metrics_port}"
    server = ServerProcess(data_dir, env={"IMAGEGATE_METRICS_BIND": bind}).start()
    try:
        base, scrape = server.base_url, f"http://{bind}/metrics"
        made = httpx.post(
            f"{base}/v1/images/generations",
            json={"model": "builtin", "prompt": "a harbour at night", "size": "256x256"},
            headers={"Authorization": f"Bearer {user_key}"},
            timeout=30,
        )
        assert made.status_code == 200, made.text
        scraped = httpx.get(scrape, timeout=10)
        head = httpx.head(scrape, timeout=10)
        elsewhere = httpx.get(f"http://{bind}/v1/models", timeout=10)
        posted = httpx.post(scrape, timeout=10)
        on_main = [
            httpx.get(f"{base}/metrics", headers=headers, timeout=10).status_code
            for headers in ({}, {"Authorization": f"Bearer {user_key}"},
                            {"Authorization": "Bearer wrong"})
        ]  # fmt: skip
    finally:
        server.stop()
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    found = samples(scraped.text)
    post = frozenset({("route", "/v1/images/generations"), ("method", "POST"), ("status", "200")})
    assert found[("imagegate_http_request_duration_seconds_count", post)] == 1  # the API's own
    assert found[("imagegate_cache_requests_total", frozenset({("result", "miss")}))] == 1
    assert user_key not in scraped.text
    assert (head.status_code, head.content) == (200, b"")
    assert elsewhere.status_code == 404  # nothing but /metrics on the scraper's port
    assert posted.status_code == 405
    assert on_main == [404, 404, 401]


def test_a_worker_serves_its_metrics_on_its_bind_address(tmp_path: Path) -> None:
    """A worker has no HTTP port of its own: IMAGEGATE_METRICS_BIND is how it is scraped."""
    bind = f"127.0.0.1:{free_port()}"
    worker = WorkerProcess(tmp_path / "data", {"IMAGEGATE_METRICS_BIND": bind}, "worker-m", 1)
    worker.start().wait_until_running(60)
    try:
        scraped = httpx.get(f"http://{bind}/metrics", timeout=10)
    finally:
        assert worker.terminate() == 0
    assert scraped.status_code == 200
    names = {family.name for family in text_string_to_metric_families(scraped.text)}
    assert {"imagegate_generation_duration_seconds", "imagegate_breaker_state"} <= names


def test_a_metrics_bind_already_taken_stops_the_server_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bind = f"127.0.0.1:{taken.getsockname()[1]}"
        server = ServerProcess(tmp_path / "data", env={"IMAGEGATE_METRICS_BIND": bind})
        try:
            with pytest.raises(RuntimeError, match="server exited early") as caught:
                server.start()
        finally:
            server.stop()
    assert f"IMAGEGATE_METRICS_BIND={bind}: cannot listen there" in str(caught.value)
