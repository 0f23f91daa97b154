"""Builds the router from settings: provider instances, the catalogue, and the routes.

A provider without the credentials its kind needs is reported and left out; so is every target
that names it. A route whose targets are all left out is not served. Nothing unconfigured is
ever called. Mistakes in the configuration (a route naming an unknown model or provider) stop
start-up with a message naming the key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from imagegate.catalog import Catalog, Target
from imagegate.errors import ConfigurationError
from imagegate.providers.base import ImageProvider
from imagegate.providers.breaker import BreakerPolicy
from imagegate.providers.builtin import BuiltinProvider
from imagegate.providers.http import UpstreamClient
from imagegate.providers.router import RetryPolicy, Route, Router
from imagegate.settings import ProviderSettings, Settings

BUILTIN_CONCURRENCY = 4
"""The built-in renderer draws on this machine's CPU: more at once only adds latency."""

Factory = Callable[[str, ProviderSettings, UpstreamClient], ImageProvider]


def _factory(kind: str) -> Factory:
    """The adapter class of ``kind``, imported only when a provider of that kind is configured
    (start-up time and memory stay small for deployments that use one or two providers)."""
    match kind:
        case "openai" | "openai_compatible":
            from imagegate.providers.openai import OpenAIProvider

            return OpenAIProvider
        case "google" | "vertex":
            from imagegate.providers.google import GoogleProvider

            return GoogleProvider
        case "stability":
            from imagegate.providers.stability import StabilityProvider

            return StabilityProvider
        case "cloudflare":
            from imagegate.providers.cloudflare import CloudflareProvider

            return CloudflareProvider
        case "cloudflare_worker":
            from imagegate.providers.cloudflare import CloudflareWorkerProvider

            return CloudflareWorkerProvider
    raise ConfigurationError(f"unknown provider kind {kind!r}", param="kind")


_REQUIRED: dict[str, tuple[str, ...]] = {
    "builtin": (),
    "openai": ("api_key",),
    "openai_compatible": ("base_url",),
    "google": ("api_key",),
    "vertex": ("api_key", "project"),
    "stability": ("api_key",),
    "cloudflare": ("api_key", "account_id"),
    "cloudflare_worker": ("base_url",),
}


@dataclass(frozen=True, slots=True)
class Assembly:
    router: Router
    provider_status: dict[str, str]
    """Each configured provider: ``ok`` or why it is left out."""


def _missing(settings: ProviderSettings) -> list[str]:
    return [name for name in _REQUIRED[settings.kind] if not getattr(settings, name)]


def _build_providers(
    configured: Mapping[str, ProviderSettings], client: UpstreamClient
) -> tuple[dict[str, ImageProvider], dict[str, str]]:
    providers: dict[str, ImageProvider] = {"builtin": BuiltinProvider()}
    status = {"builtin": "ok"}
    for name, provider_settings in configured.items():
        if provider_settings.kind == "builtin":
            continue
        missing = _missing(provider_settings)
        if missing:
            status[name] = f"left out: no {', '.join(missing)}"
            continue
        providers[name] = _factory(provider_settings.kind)(name, provider_settings, client)
        status[name] = "ok"
    return providers, status


def _configured_routes(
    settings: Settings, catalog: Catalog, available: set[str]
) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    for name, route in settings.routes.items():
        targets = []
        for index, step in enumerate(route.targets):
            where = f"routes.{name}.targets[{index}]"
            if step.model not in catalog:
                raise ConfigurationError(
                    f"{where}.model: {step.model!r} is not in the model catalogue", param=where
                )
            spec = catalog.get(step.model)
            provider = step.provider or spec.provider
            if provider not in settings.providers and provider != "builtin":
                raise ConfigurationError(
                    f"{where}.provider: {provider!r} is not a configured provider", param=where
                )
            if provider in available:
                targets.append(Target(spec, provider, step.params, step.weight))
        if targets:
            routes[name] = Route(
                name,
                tuple(targets),
                weighted=route.strategy == "weighted",
                concurrency=route.concurrency,
            )
    return routes


def build_router(settings: Settings, client: UpstreamClient) -> Assembly:
    catalog = Catalog.load(settings.models)
    providers, status = _build_providers(settings.providers, client)
    routes = {
        spec.name: Route(spec.name, (Target(spec, spec.provider),))
        for spec in catalog
        if spec.provider in providers
    }
    routes.update(_configured_routes(settings, catalog, set(providers)))
    if settings.default_model not in routes:
        raise ConfigurationError(
            f"IMAGEGATE_DEFAULT_MODEL={settings.default_model!r} is not served: it is not in the "
            f"catalogue, or its provider is not configured. Served: {', '.join(sorted(routes))}.",
            param="IMAGEGATE_DEFAULT_MODEL",
        )
    policy = settings.resilience
    router = Router(
        routes,
        providers,
        retry=RetryPolicy(
            max_attempts=policy.max_attempts,
            max_attempts_per_target=policy.max_attempts_per_target,
            backoff_base_seconds=policy.backoff_base_seconds,
            backoff_max_seconds=policy.backoff_max_seconds,
            deadline_seconds=policy.deadline_seconds,
        ),
        breaker=BreakerPolicy(
            consecutive_failures=policy.breaker_consecutive_failures,
            failure_rate=policy.breaker_failure_rate,
            window=policy.breaker_window,
            open_seconds=policy.breaker_open_seconds,
        ),
        concurrency={
            name: settings.providers[name].max_concurrency
            if name in settings.providers
            else BUILTIN_CONCURRENCY
            for name in providers
        },
    )
    return Assembly(router=router, provider_status=status)
