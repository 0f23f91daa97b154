"""Admin-only operational views."""

from __future__ import annotations

from fastapi import APIRouter

from imagegate.api.deps import AdminPrincipal, ServicesDep
from imagegate.api.schemas import ProviderReportBody

router = APIRouter(prefix="/v1", tags=["Admin"])


@router.get(
    "/providers", response_model=ProviderReportBody, summary="Providers and circuit breakers"
)
async def providers(_: AdminPrincipal, services: ServicesDep) -> ProviderReportBody:
    report = services.providers.report()
    return ProviderReportBody(providers=report.providers, targets=report.targets)
