"""OpenAI-compatible image routes: the official SDKs work against these unchanged."""

from __future__ import annotations

import base64
import binascii
from typing import TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response

from imagegate.api.deps import CurrentPrincipal, ServicesDep
from imagegate.api.disconnect import watching_client
from imagegate.api.rate_limits import AdmittedPrincipal
from imagegate.api.schemas import (
    CreateImageEditForm,
    CreateImageEditJson,
    CreateImageRequest,
    ErrorResponse,
    EstimateResponse,
    ImageRef,
    ImagesResponse,
    edit_form_openapi,
)
from imagegate.errors import InvalidRequest, PayloadTooLarge, UnsupportedParameter
from imagegate.models import GenerationRequest, InputImage
from imagegate.services.caching import CacheMode
from imagegate.services.documents import images_payload
from imagegate.services.generations import GenerationResult

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
T = TypeVar("T", bound=BaseModel)

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 429, 500, 502, 503, 504)
}
_FILE_FIELDS = ("image", "image[]", "mask")
MAX_FORM_FILES = 17  # 16 images (the most any model takes) and a mask


def _render(result: GenerationResult) -> Response:
    """Build the JSON by hand: image bytes are base64-encoded once and never re-parsed."""
    generation = result.generation
    headers = {"X-Imagegate-Cache": result.cache_status}
    if result.semantic is not None:
        headers["X-Imagegate-Semantic-Similarity"] = f"{result.semantic.similarity:.4f}"
        headers["X-Imagegate-Source-Generation-Id"] = generation.source_generation_id or ""
    return Response(
        orjson.dumps(images_payload(generation, result.images)),
        media_type="application/json",
        headers={
            **headers,
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
    body: CreateImageRequest, request: Request, principal: AdmittedPrincipal, services: ServicesDep
) -> Response:
    mode = cache_mode(request.headers.get("cache-control"), body.cache)
    async with watching_client(request) as watch:
        result = await services.generations.generate(principal, body.to_domain(), mode, watch)
    return _render(result)


@router.post(
    "/images/estimate",
    response_model=EstimateResponse,
    responses=ERRORS,
    tags=["Costs"],
    summary="What a generation request would cost, without generating",
)
async def estimate_image(
    body: CreateImageRequest, principal: CurrentPrincipal, services: ServicesDep
) -> EstimateResponse:
    estimate = await services.generations.estimate(principal, body.to_domain())
    return EstimateResponse(
        model=estimate.model,
        n=estimate.n,
        size=estimate.size,
        quality=estimate.quality,
        unit_cost_usd=estimate.unit_micro_usd / 1_000_000,
        estimated_cost_usd=estimate.total_micro_usd / 1_000_000,
        list_cost_usd=estimate.list_micro_usd / 1_000_000,
        cached=estimate.cached,
    )


def cache_mode(cache_control: str | None, requested: str | None) -> CacheMode:
    """The stricter of ``Cache-Control`` (no-store > no-cache) and the body's ``cache``."""
    directives = {d.strip().lower() for d in (cache_control or "").split(",")}
    modes = [CacheMode(requested or CacheMode.DEFAULT)]
    if "no-store" in directives:
        modes.append(CacheMode.BYPASS)
    elif "no-cache" in directives:
        modes.append(CacheMode.REFRESH)
    order = (CacheMode.DEFAULT, CacheMode.REFRESH, CacheMode.BYPASS)
    return max(modes, key=order.index)


def _too_large(field: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{field} is larger than the limit of {limit} bytes per uploaded image "
        "(IMAGEGATE_REQUESTS__MAX_UPLOAD_BYTES).",
        param=field,
        code="upload_too_large",
    )


async def _upload(value: UploadFile | str, field: str, limit: int) -> InputImage:
    if isinstance(value, str):
        raise InvalidRequest(f"{field} must be a file upload, not a text field.", param=field)
    if value.size is not None and value.size > limit:  # known from the parse: nothing read
        raise _too_large(field, limit)
    data = await value.read(limit + 1)
    if len(data) > limit:
        raise _too_large(field, limit)
    return InputImage.from_upload(data, value.content_type)


@router.post(
    "/images/edits",
    response_model=ImagesResponse,
    responses=ERRORS,
    summary="Edit images, or generate from reference images",
    openapi_extra=edit_form_openapi(),
)
async def edit_image(
    request: Request, principal: AdmittedPrincipal, services: ServicesDep
) -> Response:
    content_type = request.headers.get("content-type", "")
    limit = services.settings.requests.max_upload_bytes
    if content_type.startswith("application/json"):
        edit = await _json_edit(request, limit)
    elif content_type.startswith("multipart/form-data"):
        edit = await _multipart_edit(request, limit)
    else:
        raise InvalidRequest(
            "Send image edits as multipart/form-data with 'image' file parts, or as JSON with "
            "'images': [{'image_url': 'data:image/png;base64,...'}].",
            param=None,
            code="invalid_content_type",
        )
    generation_request, requested_mode = edit
    mode = cache_mode(request.headers.get("cache-control"), requested_mode)
    async with watching_client(request) as watch:
        result = await services.generations.generate(principal, generation_request, mode, watch)
    return _render(result)


def _validated(model: type[T], fields: object) -> T:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None


def _from_data_url(ref: ImageRef, field: str, limit: int) -> InputImage:
    if ref.file_id is not None or not ref.image_url:
        raise UnsupportedParameter(
            f"{field}: file_id is not supported; send the image as a data: URL.", param=field
        )
    header, comma, payload = ref.image_url.partition(",")
    if not (header.startswith("data:") and header.endswith(";base64") and comma):
        raise InvalidRequest(
            f"{field}: imagegate does not fetch image URLs; send a data:image/...;base64, URL "
            "or use multipart/form-data.",
            param=field,
        )
    if len(payload) // 4 * 3 > limit + 2:  # decoded size, before decoding
        raise _too_large(field, limit)
    try:
        data = base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise InvalidRequest(f"{field}: the data URL is not valid base64.", param=field) from None
    if len(data) > limit:
        raise _too_large(field, limit)
    return InputImage.from_upload(data, header.removeprefix("data:").removesuffix(";base64"))


async def _json_edit(request: Request, limit: int) -> tuple[GenerationRequest, str | None]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request.", param=None, code="invalid_json"
        ) from None
    parsed = _validated(CreateImageEditJson, body)
    images = [_from_data_url(ref, "images", limit) for ref in parsed.images]
    mask = _from_data_url(parsed.mask, "mask", limit) if parsed.mask else None
    return parsed.to_domain(images, mask), parsed.cache


async def _multipart_edit(request: Request, limit: int) -> tuple[GenerationRequest, str | None]:
    async with request.form(max_files=MAX_FORM_FILES, max_fields=64) as form:
        images = [
            await _upload(value, "image", limit)
            for key in ("image", "image[]")
            for value in form.getlist(key)
        ]
        masks = form.getlist("mask")
        mask = await _upload(masks[0], "mask", limit) if masks else None
        fields = {k: v for k, v in form.multi_items() if k not in _FILE_FIELDS}
    if not images:
        raise InvalidRequest("Missing required parameter: 'image'.", param="image")
    parsed = _validated(CreateImageEditForm, fields)
    return parsed.to_domain(images, mask), parsed.cache
