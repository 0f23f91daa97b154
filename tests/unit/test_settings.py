"""Settings from the environment and imagegate.yaml, and how the router is assembled from them."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from imagegate.errors import ConfigurationError, ModelNotFound
from imagegate.providers.assembly import build_router
from imagegate.settings import Settings, load_settings


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("IMAGEGATE_"):
            monkeypatch.delenv(name)
    path = tmp_path / "imagegate.yaml"
    monkeypatch.setenv("IMAGEGATE_CONFIG_FILE", str(path))
    return path


def test_yaml_values_may_reference_the_environment(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_OPENAI_KEY", "sk-from-env")
    config.write_text(
        "providers:\n"
        "  openai: {kind: openai, api_key: '${MY_OPENAI_KEY}'}\n"
        "  spare: {kind: openai_compatible, base_url: '${SPARE_URL:-http://localhost:9}'}\n"
    )
    settings = load_settings()
    key = settings.providers["openai"].api_key
    assert key is not None
    assert key.get_secret_value() == "sk-from-env"
    assert "sk-from-env" not in repr(settings)  # secrets never show in reprs or logs
    assert settings.providers["spare"].base_url == "http://localhost:9"


def test_a_missing_environment_variable_is_named(config: Path) -> None:
    config.write_text("providers:\n  openai: {kind: openai, api_key: '${NOT_SET_ANYWHERE}'}\n")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "NOT_SET_ANYWHERE" in caught.value.message
    assert "providers.openai.api_key" in caught.value.message


def test_the_environment_wins_over_the_file(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config.write_text("default_model: from-file\nserver: {port: 9001}\n")
    monkeypatch.setenv("IMAGEGATE_DEFAULT_MODEL", "from-env")
    settings = load_settings()
    assert settings.default_model == "from-env"
    assert settings.server.port == 9001


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("providers: {openai: {kind: dalle}}", "IMAGEGATE_PROVIDERS__OPENAI__KIND"),
        ("routes: {art: []}", "IMAGEGATE_ROUTES__ART__TARGETS"),
        ("- just\n- a list\n", "must be a mapping"),
        ("providers: [unclosed", "not valid YAML"),
    ],
)
def test_bad_files_stop_with_one_clear_message(config: Path, text: str, fragment: str) -> None:
    config.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert fragment in caught.value.message


def test_an_explicit_missing_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGEGATE_CONFIG_FILE", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings()


def test_outbound_and_webhook_settings_come_from_the_environment(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.write_text("{}\n")
    defaults = load_settings()
    assert defaults.outbound.allowlist == []
    assert (defaults.webhooks.timeout_seconds, defaults.webhooks.max_response_bytes) == (10, 4096)
    monkeypatch.setenv("IMAGEGATE_OUTBOUND__ALLOWLIST", '["127.0.0.1", "hooks.internal"]')
    monkeypatch.setenv("IMAGEGATE_WEBHOOKS__TIMEOUT_SECONDS", "2.5")
    settings = load_settings()
    assert settings.outbound.allowlist == ["127.0.0.1", "hooks.internal"]
    assert settings.webhooks.timeout_seconds == 2.5
    monkeypatch.setenv("IMAGEGATE_WEBHOOKS__TIMEOUT_SECONDS", "0")
    with pytest.raises(ConfigurationError, match="IMAGEGATE_WEBHOOKS__TIMEOUT_SECONDS"):
        load_settings()


async def _router_for(settings: Settings) -> list[str]:
    async with httpx.AsyncClient() as client:
        assembly = build_router(settings, client)
        return sorted(spec.name for spec in assembly.router.models())


async def test_routes_become_public_models_and_unconfigured_ones_are_not_served() -> None:
    settings = Settings(
        providers={"openai": {"kind": "openai"}},  # no api_key: left out
        routes={
            "art": [{"model": "builtin"}],
            "dalle-or-art": [{"model": "dall-e-3"}, {"model": "builtin"}],
            "only-dalle": [{"model": "dall-e-3"}],
        },
    )
    async with httpx.AsyncClient() as client:
        assembly = build_router(settings, client)
    assert assembly.provider_status["openai"] == "left out: no api_key"
    served = sorted(spec.name for spec in assembly.router.models())
    assert served == ["art", "builtin", "dalle-or-art"]
    with pytest.raises(ModelNotFound):
        assembly.router.resolve("dall-e-3")
    assert assembly.router.resolve("dalle-or-art").upstream_model == "abstract-art-v1"


@pytest.mark.parametrize(
    ("routes", "fragment"),
    [
        ({"x": [{"model": "no-such-model"}]}, "routes.x.targets[0].model"),
        ({"x": [{"model": "builtin", "provider": "ghost"}]}, "routes.x.targets[0].provider"),
    ],
)
async def test_routes_naming_unknown_things_stop_start_up(
    routes: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        await _router_for(Settings(routes=routes))  # type: ignore[arg-type]
    assert fragment in caught.value.message


async def test_a_default_model_that_is_not_served_stops_start_up() -> None:
    with pytest.raises(ConfigurationError, match="IMAGEGATE_DEFAULT_MODEL"):
        await _router_for(Settings(default_model="dall-e-3"))


def test_the_enhancer_is_off_by_default_and_its_key_stays_secret(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagegate.observability.logging import configured_secrets

    config.write_text("enhancer: {models: [flux], timeout_seconds: 3}\n")
    assert load_settings().enhancer.base_url is None
    monkeypatch.setenv("IMAGEGATE_ENHANCER__BASE_URL", "http://llm.test/v1")
    monkeypatch.setenv("IMAGEGATE_ENHANCER__API_KEY", "sk-llm-secret")
    settings = load_settings()
    enhancer = settings.enhancer
    assert (enhancer.base_url, enhancer.models, enhancer.timeout_seconds) == (
        "http://llm.test/v1", ["flux"], 3,
    )  # fmt: skip
    assert enhancer.system_prompt  # a sane default
    assert "sk-llm-secret" not in repr(settings)
    assert "sk-llm-secret" in configured_secrets(settings)  # redacted from every log line
    monkeypatch.setenv("IMAGEGATE_ENHANCER__TIMEOUT_SECONDS", "0")
    with pytest.raises(ConfigurationError, match="IMAGEGATE_ENHANCER__TIMEOUT_SECONDS"):
        load_settings()


@pytest.mark.parametrize(
    ("value", "address"),
    [("127.0.0.1:9100", ("127.0.0.1", 9100)), ("[::]:9100", ("::", 9100)),
     ("metrics.internal:80", ("metrics.internal", 80))],
)  # fmt: skip
def test_a_metrics_bind_is_a_host_and_a_port(
    config: Path, monkeypatch: pytest.MonkeyPatch, value: str, address: tuple[str, int]
) -> None:
    config.write_text("{}")
    assert load_settings().metrics_address is None  # no separate listener unless asked
    monkeypatch.setenv("IMAGEGATE_METRICS_BIND", value)
    assert load_settings().metrics_address == address


@pytest.mark.parametrize("value", ["9100", "127.0.0.1", ":9100", "127.0.0.1:0", "host:99999"])
def test_a_bad_metrics_bind_stops_start_up_with_its_name(
    config: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    config.write_text("{}")
    monkeypatch.setenv("IMAGEGATE_METRICS_BIND", value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "IMAGEGATE_METRICS_BIND" in caught.value.message
    assert "HOST:PORT" in caught.value.message
