"""Admin-only operational views."""

from __future__ import annotations

from fastapi import APIRouter

from imagegate.api.deps import AdminPrincipal, ServicesDep
from imagegate.api.schemas import KeyExpiryBody, KeyLimitsBody, LimitsBody, ProviderReportBody
from imagegate.models import Limits, RateLimits

router = APIRouter(prefix="/v1", tags=["Admin"])


@router.get(
    "/providers", response_model=ProviderReportBody, summary="Providers and circuit breakers"
)
async def providers(_: AdminPrincipal, services: ServicesDep) -> ProviderReportBody:
    report = services.providers.report()
    return ProviderReportBody(providers=report.providers, targets=report.targets)


def _limits(body: LimitsBody) -> Limits:
    def micro(usd: float | None) -> int | None:
        return None if usd is None else round(usd * 1_000_000)

    return Limits(
        micro(body.budget_usd_day),
        micro(body.budget_usd_month),
        body.images_per_minute,
        body.images_per_day,
    )


@router.put(
    "/keys/{prefix}/limits",
    response_model=KeyLimitsBody,
    summary="Set an API key's budgets, quotas and traffic limits",
    description="Replaces them all: an omitted or null budget or quota is unlimited; an "
    "omitted or null traffic limit is the configured default, 0 is unlimited.",
)
async def set_key_limits(
    prefix: str, body: KeyLimitsBody, _: AdminPrincipal, services: ServicesDep
) -> KeyLimitsBody:
    rate_limits = RateLimits(body.requests_per_minute, body.concurrent_generations)
    await services.keys.set_limits(prefix, _limits(body), rate_limits)
    return body


@router.put(
    "/keys/{prefix}/expiry",
    response_model=KeyExpiryBody,
    summary="Set or clear when an API key stops working",
)
async def set_key_expiry(
    prefix: str, body: KeyExpiryBody, _: AdminPrincipal, services: ServicesDep
) -> KeyExpiryBody:
    [key, *_others] = await services.keys.set_expiry(prefix, body.expires_at)
    return KeyExpiryBody(expires_at=key.expires_at)


@router.put(
    "/users/{name}/limits",
    response_model=LimitsBody,
    summary="Set a user's budgets and quotas, shared by all their keys",
)
async def set_user_limits(
    name: str, body: LimitsBody, _: AdminPrincipal, services: ServicesDep
) -> LimitsBody:
    await services.keys.set_user_limits(name, _limits(body))
    return body
