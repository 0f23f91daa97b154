"""Typed dependencies, so handlers read like plain functions of what they need."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from imagegate.container import Services
from imagegate.errors import NotFound
from imagegate.models import Principal

# Declares the scheme in the OpenAPI document; the header itself is checked by KeyService.
bearer_scheme = HTTPBearer(auto_error=False, description="An imagegate API key: ig_...")


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs plain ``def`` dependencies in a worker thread
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_principal(
    request: Request,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    services: Services = request.app.state.services
    return await services.keys.authenticate(request.headers.get("authorization"))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def admin_principal(principal: CurrentPrincipal) -> Principal:
    """Admin-only routes answer 404 to everyone else, so their existence is not confirmed."""
    if not principal.is_admin:
        raise NotFound("Unknown route.")
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
