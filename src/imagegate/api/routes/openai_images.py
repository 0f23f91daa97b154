"""OpenAI-compatible image routes: the official SDKs work against these unchanged."""

from __future__ import annotations

import base64
import time

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response

from imagegate.api.deps import CurrentPrincipal, ServicesDep
from imagegate.api.schemas import (
    CreateImageEditForm,
    CreateImageRequest,
    ErrorResponse,
    ImagesResponse,
    edit_form_openapi,
)
from imagegate.errors import InvalidRequest
from imagegate.models import InputImage, ResponseFormat
from imagegate.services.generations import GenerationResult

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 429, 500, 502, 503, 504)
}
_FILE_FIELDS = ("image", "image[]", "mask")
MAX_FORM_FILES = 17  # 16 images (the most any model takes) and a mask


def _render(result: GenerationResult) -> Response:
    """Build the JSON by hand: image bytes are base64-encoded once and never re-parsed."""
    generation = result.generation
    params = generation.params
    as_b64 = params["response_format"] == ResponseFormat.B64_JSON.value
    data = [
        {
            "b64_json" if as_b64 else "url": (
                base64.b64encode(item.data).decode("ascii") if as_b64 else item.url
            ),
            "revised_prompt": item.image.revised_prompt,
        }
        for item in result.images
    ]
    body = {
        "created": int(time.time()),
        "data": data,
        "output_format": params["output_format"],
        # what was made: providers that take aspect ratios return their own pixel sizes
        "size": (
            f"{result.images[0].image.width}x{result.images[0].image.height}"
            if result.images
            else params["size"]
        ),
        "quality": params["quality"],
    }
    return Response(
        orjson.dumps(body),
        media_type="application/json",
        headers={
            "X-Imagegate-Generation-Id": generation.id,
            "X-Imagegate-Provider": generation.provider or "",
            "X-Imagegate-Cost-USD": f"{generation.cost_micro_usd / 1_000_000:.6f}",
        },
    )


@router.post(
    "/images/generations",
    response_model=ImagesResponse,
    responses=ERRORS,
    summary="Create images from a prompt",
)
async def create_image(
    body: CreateImageRequest, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    return _render(await services.generations.generate(principal, body.to_domain()))


async def _upload(value: UploadFile | str, field: str) -> InputImage:
    if isinstance(value, str):
        raise InvalidRequest(f"{field} must be a file upload, not a text field.", param=field)
    return InputImage.from_upload(await value.read(), value.content_type)


@router.post(
    "/images/edits",
    response_model=ImagesResponse,
    responses=ERRORS,
    summary="Edit images, or generate from reference images",
    openapi_extra=edit_form_openapi(),
)
async def edit_image(
    request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest(
            "Send image edits as multipart/form-data with 'image' file parts.",
            param=None,
            code="invalid_content_type",
        )
    async with request.form(max_files=MAX_FORM_FILES, max_fields=64) as form:
        images = [
            await _upload(value, "image")
            for key in ("image", "image[]")
            for value in form.getlist(key)
        ]
        masks = form.getlist("mask")
        mask = await _upload(masks[0], "mask") if masks else None
        fields = {k: v for k, v in form.multi_items() if k not in _FILE_FIELDS}
    if not images:
        raise InvalidRequest("Missing required parameter: 'image'.", param="image")
    try:
        parsed = CreateImageEditForm.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None
    result = await services.generations.generate(principal, parsed.to_domain(images, mask))
    return _render(result)
