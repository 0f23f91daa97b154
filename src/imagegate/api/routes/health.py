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
    body = Readiness(
        status="ok" if ready else "unavailable",
        checks=checks,
        providers=services.providers.report().providers,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
