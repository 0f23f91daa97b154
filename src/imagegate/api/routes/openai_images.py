"""OpenAI-compatible image routes: the official SDKs work against these unchanged."""

from __future__ import annotations

import base64
import time

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from imagegate.api.deps import CurrentPrincipal, ServicesDep
from imagegate.api.schemas import CreateImageRequest, ErrorResponse, ImagesResponse
from imagegate.models import ResponseFormat
from imagegate.services.generations import GenerationResult

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 429, 500, 502, 503)
}


def _render(result: GenerationResult) -> bytes:
    """Build the JSON by hand: image bytes are base64-encoded once and never re-parsed."""
    as_b64 = result.generation.params["response_format"] == ResponseFormat.B64_JSON.value
    data = [
        {
            "b64_json" if as_b64 else "url": (
                base64.b64encode(item.data).decode("ascii") if as_b64 else item.url
            ),
            "revised_prompt": item.image.revised_prompt,
        }
        for item in result.images
    ]
    params = result.generation.params
    return orjson.dumps(
        {
            "created": int(time.time()),
            "data": data,
            "output_format": params["output_format"],
            "size": params["size"],
            "quality": params["quality"],
        }
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
    result = await services.generations.generate(principal, body.to_domain())
    generation = result.generation
    return Response(
        _render(result),
        media_type="application/json",
        headers={
            "X-Imagegate-Generation-Id": generation.id,
            "X-Imagegate-Provider": generation.provider or "",
            "X-Imagegate-Cost-USD": f"{generation.cost_micro_usd / 1_000_000:.6f}",
        },
    )
