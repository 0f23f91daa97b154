"""Liveness (the process answers) and readiness (its database and storage work)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse

from imagegate.api.deps import ServicesDep
from imagegate.api.schemas import Readiness

router = APIRouter(tags=["Health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, summary="Readiness: database and storage")
async def readyz(services: ServicesDep) -> JSONResponse:
    checks = await services.health.readiness()
    ready = all(state == "ok" for state in checks.values())
    degraded = services.health.degraded()
    body = Readiness(
        status=("degraded" if degraded else "ok") if ready else "unavailable",
        checks=checks,
        degraded=degraded,
        providers=services.providers.report().providers,
    )
    shown = body.model_dump(exclude=None if degraded else {"degraded"})  # listed when any
    return JSONResponse(shown, status_code=200 if ready else 503)
