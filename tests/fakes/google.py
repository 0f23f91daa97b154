"""A loopback fake of Google's image APIs: Imagen ``:predict`` and Gemini ``:generateContent``,
on both the Gemini API and Vertex AI paths.

    state = FakeState(api_key="test-key")
    with FakeServer(build_google_fake(state)) as fake:
        ... point a ``google`` provider's base_url (or a ``vertex`` one's) at fake.base_url ...

Like the real service it checks credentials first (a bad Gemini API key is a 400 with
``API_KEY_INVALID``, a bad Vertex token a 401), then the body; it answers with real image bytes
at each aspect ratio's native size, in Google's error envelope when it refuses. Run it alone with
``python -m tests.fakes.google --port 8089``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
from collections.abc import Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp
from tests.fakes.images import fake_image
from tests.fakes.server import DroppedConnection, FakeState, Fault, apply_timing_fault

IMAGEN_MODELS = frozenset(
    {"imagen-4.0-generate-001", "imagen-4.0-ultra-generate-001", "imagen-4.0-fast-generate-001"}
)
GEMINI_MODELS = frozenset({"gemini-2.5-flash-image", "gemini-3-pro-image-preview"})

IMAGEN_SIZES = {
    "1:1": (1024, 1024),
    "3:4": (896, 1280),
    "4:3": (1280, 896),
    "9:16": (768, 1408),
    "16:9": (1408, 768),
}
GEMINI_SIZES = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
IMAGEN_MIME_FORMATS = {"image/png": "png", "image/jpeg": "jpeg"}
VERTEX_ONLY_PARAMETERS = {
    "seed": "seed",
    "negativePrompt": "negative_prompt",
    "addWatermark": "add_watermark",
    "enhancePrompt": "enhance_prompt",
}
_JSON_TYPE = "application/json"
IMAGE_TOKENS = 1290
"""What one gemini-2.5-flash-image output image costs in tokens (up to 1024x1024)."""

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_FAULT_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in the troubleshooting guide.",
    503: "The model is overloaded. Please try again later.",
}


class GoogleRefusal(Exception):
    """A refusal in Google's envelope, raised anywhere in a handler."""

    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.message, self.details = status, message, details or []

    def response(self) -> Response:
        error = {
            "code": self.status,
            "message": self.message,
            "status": _STATUS_NAMES.get(self.status, "UNKNOWN"),
        }
        if self.details:
            error["details"] = self.details
        return _json({"error": error}, self.status)


def build_google_fake(state: FakeState) -> Starlette:
    """A fresh fake speaking the Gemini API and Vertex AI paths, sharing ``state``."""

    async def gemini_api(request: Request) -> ASGIApp:
        body = await state.record(request)
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")

        def check_auth() -> None:
            if key != state.api_key:
                raise GoogleRefusal(
                    400,
                    "API key not valid. Please pass a valid API key.",
                    [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                            "metadata": {"service": "generativelanguage.googleapis.com"},
                        }
                    ],
                )

        return await _serve(state, request.path_params["call"], body, check_auth, vertex=False)

    async def vertex(request: Request) -> ASGIApp:
        body = await state.record(request)
        authorization = request.headers.get("authorization", "")

        def check_auth() -> None:
            if authorization != f"Bearer {state.api_key}":
                raise GoogleRefusal(
                    401,
                    "Request had invalid authentication credentials. Expected OAuth 2 access "
                    "token, login cookie or other valid authentication credential.",
                )

        return await _serve(state, request.path_params["call"], body, check_auth, vertex=True)

    return Starlette(
        routes=[
            Route("/v1beta/models/{call}", gemini_api, methods=["POST"]),
            Route(
                "/v1/projects/{project}/locations/{location}/publishers/google/models/{call}",
                vertex,
                methods=["POST"],
            ),
        ]
    )


async def _serve(
    state: FakeState, call: str, body: bytes, check_auth: Callable[[], None], *, vertex: bool
) -> ASGIApp:
    fault = state.faults.take()
    await apply_timing_fault(fault)
    if fault is not None and fault.kind == "reset":
        return DroppedConnection()
    try:
        check_auth()
        if fault is not None and fault.kind == "status":
            raise _fault_refusal(fault)
        model, _, method = call.partition(":")
        payload = _parsed(body)
        if method == "predict" and model in IMAGEN_MODELS:
            answer = _predict(payload, vertex, safety=_is(fault, "safety"))
        elif method == "generateContent" and model in GEMINI_MODELS:
            answer = _generate_content(payload, model, safety=_is(fault, "safety"))
        else:
            raise GoogleRefusal(
                404,
                f"models/{model} is not found for API version v1beta, or is not supported "
                f"for {method or 'this method'}. Call ListModels to see the list of available "
                "models and their supported methods.",
            )
    except GoogleRefusal as refusal:
        return refusal.response()
    if _is(fault, "malformed"):
        return Response(b'{"predictions": [{"bytesBase64Encoded": "iVBOR', media_type=_JSON_TYPE)
    return _json(answer, 200)


def _predict(payload: dict[str, Any], vertex: bool, *, safety: bool) -> dict[str, Any]:
    instances = payload.get("instances")
    if not isinstance(instances, list) or not instances or not _get(instances[0], "prompt"):
        raise GoogleRefusal(400, "instances[0].prompt is required.")
    parameters = payload.get("parameters") or {}
    count = _get(parameters, "sampleCount", "sample_count", default=4)
    if not isinstance(count, int) or not 1 <= count <= 4:
        raise GoogleRefusal(400, f"sampleCount must be between 1 and 4, got {count}.")
    ratio = _get(parameters, "aspectRatio", "aspect_ratio", default="1:1")
    if ratio not in IMAGEN_SIZES:
        raise GoogleRefusal(400, f"Unsupported aspect ratio {ratio!r} for Imagen.")
    for camel, snake in VERTEX_ONLY_PARAMETERS.items():
        if not vertex and _get(parameters, camel, snake) is not None:
            # The genai SDK refuses these before sending; the fake is as strict.
            raise GoogleRefusal(400, f"{camel} parameter is not supported in Gemini API.")
    if _get(parameters, "seed") is not None and _get(
        parameters, "addWatermark", "add_watermark", default=True
    ):
        raise GoogleRefusal(400, "Seed is not supported when watermark is enabled.")
    options = _get(parameters, "outputOptions", "output_options", default={})
    mime = _get(options, "mimeType", "mime_type", default="image/png")
    if mime not in IMAGEN_MIME_FORMATS:
        raise GoogleRefusal(400, f"Unsupported output mime type {mime!r}.")
    if safety:
        reason = (
            "Your current safety filter threshold filtered out the generated image. "
            "Support codes: 58061214"
        )
        return {"predictions": [{"raiFilteredReason": reason} for _ in range(count)]}
    width, height = IMAGEN_SIZES[ratio]
    fmt = IMAGEN_MIME_FORMATS[mime]
    return {
        "predictions": [
            {"bytesBase64Encoded": _b64(fake_image(width, height, fmt, str(i))), "mimeType": mime}
            for i in range(count)
        ]
    }


def _generate_content(payload: dict[str, Any], model: str, *, safety: bool) -> dict[str, Any]:
    contents = payload.get("contents")
    if not isinstance(contents, list) or not contents:
        raise GoogleRefusal(400, "* GenerateContentRequest.contents: contents is not specified")
    texts: list[str] = []
    references = 0
    for part in _get(contents[-1], "parts", default=[]):
        inline = _get(part, "inlineData", "inline_data")
        if inline is not None:
            try:
                base64.b64decode(_get(inline, "data", default=""), validate=True)
            except (binascii.Error, ValueError):
                raise GoogleRefusal(400, "Invalid value at 'inline_data.data' (bytes)") from None
            references += 1
        elif isinstance(_get(part, "text"), str):
            texts.append(_get(part, "text"))
    config = _get(payload, "generationConfig", "generation_config", default={})
    image_config = _get(config, "imageConfig", "image_config", default={})
    ratio = _get(image_config, "aspectRatio", "aspect_ratio", default="1:1")
    if ratio not in GEMINI_SIZES:
        raise GoogleRefusal(400, f"Unsupported aspect ratio {ratio!r}.")
    prompt_tokens = sum(len(t) for t in texts) // 4 + 1
    image_input_tokens = 258 * references
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens + image_input_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}]
        + ([{"modality": "IMAGE", "tokenCount": image_input_tokens}] if references else []),
    }
    if safety:
        usage["totalTokenCount"] = usage["promptTokenCount"]
        return {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage}
    parts: list[dict[str, Any]] = [{"text": "Here is the image you asked for."}]
    # An image model draws unless told to answer in text only.
    modalities = _get(
        config, "responseModalities", "response_modalities", default=["TEXT", "IMAGE"]
    )
    if "IMAGE" in modalities:
        width, height = GEMINI_SIZES[ratio]
        image = fake_image(width, height, "png", f"gemini:{references}")
        parts.append({"inlineData": {"mimeType": "image/png", "data": _b64(image)}})
    output_tokens = IMAGE_TOKENS if len(parts) > 1 else 0
    usage |= {
        "candidatesTokenCount": output_tokens + 9,
        "totalTokenCount": usage["promptTokenCount"] + output_tokens + 9,
        "candidatesTokensDetails": [
            {"modality": "TEXT", "tokenCount": 9},
            {"modality": "IMAGE", "tokenCount": output_tokens},
        ],
    }
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": "fake-response",
    }


def _fault_refusal(fault: Fault) -> GoogleRefusal:
    status = fault.status
    message = _FAULT_MESSAGES.get(status, f"fake: HTTP {status}")
    details: list[dict[str, Any]] = []
    if status == 429:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                    }
                ],
            }
        )
        if fault.retry_after is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{fault.retry_after:g}s",
                }
            )
    return GoogleRefusal(status, message, details)


def _parsed(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise GoogleRefusal(400, "Invalid JSON payload received.") from None
    if not isinstance(payload, dict):
        raise GoogleRefusal(400, "Invalid JSON payload received. Expected an object.")
    return payload


def _get(mapping: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` present (camelCase and snake_case are both proto3 JSON)."""
    if isinstance(mapping, dict):
        for name in names:
            if name in mapping:
                return mapping[name]
    return default


def _is(fault: Fault | None, kind: str) -> bool:
    return fault is not None and fault.kind == kind


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _json(content: dict[str, Any], status: int) -> Response:
    return Response(orjson.dumps(content), status, media_type=_JSON_TYPE)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Fake Google image APIs on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--api-key", default="test-key", help="API key and Vertex bearer token.")
    args = parser.parse_args()
    uvicorn.run(
        build_google_fake(FakeState(api_key=args.api_key)), host="127.0.0.1", port=args.port
    )


if __name__ == "__main__":
    main()
