"""``GET /files/{key}``: permanent, public, immutable image URLs.

Keys are content hashes, so a key's bytes never change: clients and CDNs may cache forever.
Depending on the storage backend the bytes come from memory, are streamed through from the
store, or the client is sent (307) to a short-lived presigned URL of the store.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import RedirectResponse, Response, StreamingResponse

from imagegate.api.deps import ServicesDep
from imagegate.models import BlobLink, BlobStream

router = APIRouter(tags=["Files"])

IMMUTABLE = "public, max-age=31536000, immutable"


_IMAGE = {"schema": {"type": "string", "format": "binary"}}
FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "The image bytes",
        "content": {"image/png": _IMAGE, "image/jpeg": _IMAGE, "image/webp": _IMAGE},
    },
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    307: {"description": "Sent to a short-lived presigned URL of the object store"},
}


@router.head(
    "/files/{key}",
    operation_id="head_file",
    summary="A stored image's headers",
    response_class=Response,
    responses=FILE_RESPONSES,
)
@router.get(
    "/files/{key}",
    operation_id="get_file",
    summary="Fetch a stored image",
    response_class=Response,
    responses=FILE_RESPONSES,
)
async def get_file(key: str, request: Request, services: ServicesDep) -> Response:
    file = await services.image_files.open(key)
    body = file.body
    headers = {"ETag": file.etag, "Cache-Control": IMMUTABLE}
    if file.etag in request.headers.get("if-none-match", ""):
        if isinstance(body, BlobStream):
            await body.aclose()
        return Response(status_code=304, headers=headers)
    if isinstance(body, BlobLink):
        # The link expires, so the redirect may be reused for half its life at most.
        cache = f"private, max-age={body.expires_seconds // 2}"
        return RedirectResponse(body.url, 307, headers={"Cache-Control": cache})
    if isinstance(body, bytes):
        return Response(body, media_type=file.mime, headers=headers)
    headers["Content-Length"] = str(body.size)
    if request.method == "HEAD":
        await body.aclose()
        return Response(media_type=file.mime, headers=headers)
    return StreamingResponse(
        body.chunks, media_type=file.mime, headers=headers, background=BackgroundTask(body.aclose)
    )
