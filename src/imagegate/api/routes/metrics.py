"""``GET /metrics``: Prometheus exposition for an admin key or ``IMAGEGATE_METRICS_TOKEN``.

Everyone else gets a 404, so the route's existence is not confirmed.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from starlette.responses import Response

from imagegate.api.deps import ServicesDep
from imagegate.errors import NotFound
from imagegate.observability.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, services: ServicesDep) -> Response:
    header = request.headers.get("authorization") or ""
    token = services.settings.metrics_token
    presented = header.removeprefix("Bearer ").strip()
    allowed = token is not None and hmac.compare_digest(
        presented.encode(), token.get_secret_value().encode()
    )
    if not allowed and header:
        # A bad, revoked or expired key gets its 401, as on every other keyed route.
        allowed = (await services.keys.authenticate(header)).is_admin
    if not allowed:
        raise NotFound("Unknown route.")
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE)
