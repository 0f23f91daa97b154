"""No secret appears in any log line, response body or header (a real gateway process, logging
at DEBUG, with provider credentials, an admin key, user keys and webhook secrets set to
recognisable values; a healthy and a failing fake provider; the web UI's session secret)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault
from tests.support.processes import environment, free_port, run_cli

PROVIDER_KEY = "sk-ProviderCredential-7d1f0c3a9e"
FAILING_KEY = "sk-FailingProviderCredential-41b2"
METRICS_TOKEN = "mt-MetricsScrapeToken-93c0e1"
DEBUG_SERVE = (
    "import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stdout); "
    "from imagegate.cli import main; sys.argv[0] = 'imagegate'; main()"
)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeState, str, str]]:
    failing = FakeState(api_key=FAILING_KEY)
    with (
        FakeServer(build_openai_fake(FakeState(api_key=PROVIDER_KEY))) as good,
        FakeServer(build_openai_fake(failing)) as bad,
    ):
        yield failing, good.base_url, bad.base_url


def _serve(data_dir: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", DEBUG_SERVE, "serve", "--port", str(port)],
            env=environment(data_dir, IMAGEGATE_LOG__LEVEL="debug", **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(log.read_text())


def test_no_secret_leaks_into_logs_or_responses(
    tmp_path: Path, fakes: tuple[FakeState, str, str]
) -> None:
    failing, good_url, bad_url = fakes
    config = {
        "providers": {
            "good": {"kind": "openai", "api_key": PROVIDER_KEY, "base_url": f"{good_url}/v1"},
            "bad": {
                "kind": "openai",
                "api_key": FAILING_KEY,
                "base_url": f"{bad_url}/v1",
                "timeout_seconds": 1,
            },
        },
        "routes": {
            "good-route": [{"model": "gpt-image-1", "provider": "good"}],
            "bad-route": [{"model": "gpt-image-1", "provider": "bad"}],
        },
        "resilience": {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.02},
    }
    (tmp_path / "imagegate.yaml").write_text(json.dumps(config))
    env = {
        "IMAGEGATE_CONFIG_FILE": str(tmp_path / "imagegate.yaml"),
        "IMAGEGATE_OUTBOUND__ALLOWLIST": '["127.0.0.1"]',
        "IMAGEGATE_SERVER__ACCESS_LOG": "true",
        "IMAGEGATE_METRICS_TOKEN": METRICS_TOKEN,
    }
    data = tmp_path / "data"
    secrets = [PROVIDER_KEY, FAILING_KEY, METRICS_TOKEN]
    keys = {}
    for name, role in [("root", "admin"), ("alice", "user")]:
        made = run_cli("keys", "create", "--name", name, "--role", role, data_dir=data,
                       env=environment(data, **env))  # fmt: skip
        assert made.returncode == 0, made.stderr
        keys[name] = made.stdout.strip()
        webhook_secret = made.stderr.rsplit(":", 1)[-1].strip()
        assert webhook_secret.startswith("whsec_")
        secrets += [keys[name], webhook_secret, webhook_secret.removeprefix("whsec_")]
    log = tmp_path / "server.log"
    process, base = _serve(data, env, log)
    seen: list[str] = []
    try:
        admin = {"Authorization": f"Bearer {keys['root']}"}
        user = {"Authorization": f"Bearer {keys['alice']}"}
        with httpx.Client(base_url=base, timeout=30) as http:

            def call(method: str, path: str, **kwargs: object) -> httpx.Response:
                answer = http.request(method, path, **kwargs)  # type: ignore[arg-type]
                seen.append(f"{answer.status_code} {answer.headers} {answer.text}")
                return answer

            good = {"model": "good-route", "prompt": "a fox", "size": "1024x1024"}
            bad = {**good, "model": "bad-route"}
            ok = call("POST", "/v1/images/generations", headers=user, json=good)
            assert ok.status_code == 200, ok.text
            failing.faults.next(*[Fault.error(500)] * 10)
            broken = call("POST", "/v1/images/generations", headers=user, json=bad)
            assert broken.status_code >= 500
            failing.faults.clear()
            failing.api_key = "sk-something-else"  # now the gateway's key is wrong upstream
            call("POST", "/v1/images/generations", headers=user, json=bad)
            call("POST", "/v1/images/generations", headers=user, json={"prompt": 7})
            call("GET", "/v1/models", headers={"Authorization": "Bearer ig_wrongkey_1234567890"})
            call("POST", "/v1/jobs", headers=user,
                 json={**good, "webhook": "http://127.0.0.1:9/hook"})  # fmt: skip
            for path in ("/v1/models", "/readyz", "/healthz", "/v1/usage", "/v1/images"):
                call("GET", path, headers=user)
            for path in ("/v1/providers", "/v1/events", "/v1/usage", "/openapi.json"):
                call("GET", path, headers=admin)
            call("PUT", f"/v1/keys/{keys['alice'][:11]}/limits", headers=admin, json={})
            assert call("GET", "/metrics", headers=admin).status_code == 200
            scraped = call("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert scraped.status_code == 200
            call("GET", "/metrics")
            # the web UI: a session signed with <data_dir>/web-session-secret
            signed_in = call("POST", "/signin", data={"api_key": keys["alice"]})
            assert signed_in.status_code == 303, signed_in.text
            for path in ("/", "/generate", "/usage"):
                call("GET", path)
            call("POST", "/signin", data={"api_key": "ig_wrongkey_1234567890"})
            http.cookies.clear()
            time.sleep(1.5)  # let the webhook attempt and background writes log
    finally:
        process.terminate()
        process.wait(timeout=15)
    session_secret = (data / "web-session-secret").read_text().strip()
    assert len(session_secret) >= 32
    secrets.append(session_secret)
    logged = log.read_text()
    assert '"level": "debug"' in logged  # the capture really was at DEBUG
    for secret in secrets:
        assert secret not in logged, f"a secret ({secret[:6]}...) is in the server log"
        for answer in seen:
            assert secret not in answer, f"a secret ({secret[:6]}...) is in a response"
