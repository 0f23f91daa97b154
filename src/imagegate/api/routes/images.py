"""The image library: ``/v1/images`` (list, read, edit, delete) and ``/v1/generations/{id}``.

``GET /v1/images/{image_id}`` sits beside the OpenAI routes (``POST /v1/images/generations``,
``/edits``, ``/estimate``) without shadowing them: those are POSTs, and a GET of their paths is
simply an image that does not exist (404).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from imagegate.api.deps import CurrentPrincipal, ServicesDep
from imagegate.api.image_schemas import (
    GenerationObject,
    ImageDetail,
    ImageList,
    ImagePatch,
    generation_object,
    image_detail,
    image_list,
)
from imagegate.api.routes.openai_images import ERRORS
from imagegate.models import ImageQuery, Outcome
from imagegate.services.images import MAX_PAGE

router = APIRouter(prefix="/v1", tags=["Images"])

_MOMENT = "ISO 8601 date or date-time; UTC unless it has an offset."
ImageId = Annotated[str, Path(max_length=64)]


@router.get(
    "/images",
    response_model=ImageList,
    responses=ERRORS,
    summary="Your images, newest first, filtered and searched",
)
async def list_images(
    principal: CurrentPrincipal,
    services: ServicesDep,
    model: Annotated[str | None, Query(max_length=200)] = None,
    provider: Annotated[str | None, Query(max_length=100)] = None,
    start: Annotated[
        datetime | None, Query(alias="from", description=f"Created at or after. {_MOMENT}")
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", description=f"Created before. {_MOMENT}")
    ] = None,
    tag: Annotated[str | None, Query(max_length=50)] = None,
    outcome: Annotated[Outcome | None, Query(description="generated, cache_hit, ...")] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=500,
            description="Words that must all appear in the prompt (whole words, any case); "
            "end a word with * to match words starting with it.",
        ),
    ] = None,
    user: Annotated[
        str | None, Query(max_length=200, description="Admins only: one user's name or id.")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> ImageList:
    query = ImageQuery(
        model=model,
        provider=provider,
        start=start,
        end=end,
        tag=tag,
        outcome=outcome,
        q=q,
        user=user,
    )
    return image_list(await services.images.list(principal, query, cursor, limit))


@router.get("/images/{image_id}", response_model=ImageDetail, responses=ERRORS, summary="One image")
async def get_image(
    image_id: ImageId, principal: CurrentPrincipal, services: ServicesDep
) -> ImageDetail:
    return image_detail(await services.images.get(principal, image_id))


@router.patch(
    "/images/{image_id}",
    response_model=ImageDetail,
    responses=ERRORS,
    summary="Change an image's alt text, tags or pin",
)
async def update_image(
    image_id: ImageId, body: ImagePatch, principal: CurrentPrincipal, services: ServicesDep
) -> ImageDetail:
    view = await services.images.update(
        principal, image_id, alt_text=body.alt_text, tags=body.tags, pinned=body.pinned
    )
    return image_detail(view)


@router.delete(
    "/images/{image_id}",
    status_code=204,
    responses=ERRORS,
    summary="Delete an image (its file goes when no other record uses it)",
)
async def delete_image(
    image_id: ImageId, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    await services.images.delete(principal, image_id)
    return Response(status_code=204)


@router.get(
    "/generations/{generation_id}",
    response_model=GenerationObject,
    responses=ERRORS,
    summary="One generation request: what was asked, what happened, what it cost",
)
async def get_generation(
    generation_id: Annotated[str, Path(max_length=64)],
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> GenerationObject:
    return generation_object(await services.images.generation(principal, generation_id))
