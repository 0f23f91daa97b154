"""``GET /files/{key}``: permanent, public, immutable image URLs.

Keys are content hashes, so a key's bytes never change: clients and CDNs may cache forever.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from imagegate.api.deps import ServicesDep

router = APIRouter(tags=["Files"])

IMMUTABLE = "public, max-age=31536000, immutable"


@router.api_route("/files/{key}", methods=["GET", "HEAD"], summary="Fetch a stored image")
async def get_file(key: str, request: Request, services: ServicesDep) -> Response:
    data, mime = await services.image_files.read(key)
    etag = f'"{key.partition(".")[0]}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=mime, headers=headers)
