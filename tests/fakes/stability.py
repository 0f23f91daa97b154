"""A loopback fake of Stability AI's Stable Image API v2beta (providers.md section 3).

    POST /v2beta/stable-image/generate/{core|ultra|sd3}   multipart/form-data, Bearer key

Checks in the real order: the key first (401), then the route (404), the body size (413) and
the form (400), each in Stability's envelope ``{"id", "name", "errors": [...]}``. Answers with
real image bytes at about one megapixel in the asked aspect ratio (an edit keeps the input's
size) and format, as base64 JSON for ``Accept: application/json`` or as raw bytes with
``finish-reason`` and ``seed`` headers otherwise.

Faults (``state.faults``): ``status`` -> that status in the envelope (+ ``Retry-After``),
``malformed`` -> 200 with truncated JSON (truncated image bytes in raw mode), ``reset`` -> a
dropped connection, ``safety`` -> 403 ``content_moderation``, or, with
``state.extra["safety"] = "filtered"``, 200 with ``finish_reason=CONTENT_FILTERED``.

Run it alone: ``python -m tests.fakes.stability --port 8091``.
"""

from __future__ import annotations

import argparse
import base64
import io
import math
import uuid
import zlib
from dataclasses import dataclass

import orjson
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.fakes.images import fake_image
from tests.fakes.server import DroppedConnection, FakeState, apply_timing_fault

MAX_BODY_BYTES = 10 * 1024 * 1024
ASPECT_RATIOS = ("1:1", "16:9", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
OUTPUT_FORMATS = {
    "core": ("png", "jpeg", "webp"),
    "ultra": ("png", "jpeg", "webp"),
    "sd3": ("png", "jpeg"),
}
SD3_MODELS = (
    "sd3.5-large",
    "sd3.5-large-turbo",
    "sd3.5-medium",
    "sd3.5-flash",
    "sd3-large",
    "sd3-large-turbo",
    "sd3-medium",
)
STYLE_PRESETS = frozenset(
    {
        *("3d-model", "analog-film", "anime", "cinematic", "comic-book", "digital-art"),
        *("enhance", "fantasy-art", "isometric", "line-art", "low-poly", "modeling-compound"),
        *("neon-punk", "origami", "photographic", "pixel-art", "tile-texture"),
    }
)
_ERROR_NAMES = {
    400: "bad_request",
    401: "unauthorized",  # UNCONFIRMED name
    403: "forbidden",
    404: "not_found",
    413: "payload_too_large",
    422: "invalid_language",  # UNCONFIRMED name
    429: "rate_limit_exceeded",
}
_MODERATION_TEXT = (
    "Your request was flagged by our content moderation system, as a result your request was "
    "denied and you were not charged."
)


@dataclass(frozen=True)
class FormPart:
    """One multipart/form-data part: a text field (no filename) or a file."""

    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode()


def read_multipart(content_type: str, body: bytes) -> dict[str, FormPart]:
    """The parts of a multipart/form-data body by name; ValueError when it is not one."""
    mime, params = _header_params(content_type)
    boundary = params.get("boundary", "")
    if mime != "multipart/form-data" or not boundary:
        raise ValueError("the body must be multipart/form-data with a boundary")
    parts: dict[str, FormPart] = {}
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):  # the closing boundary
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in head.decode().split("\r\n"))
        }
        _, disposition = _header_params(headers.get("content-disposition", ""))
        parts[disposition.get("name", "")] = FormPart(
            data.removesuffix(b"\r\n"), disposition.get("filename"), headers.get("content-type")
        )
    return parts


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    """``'form-data; name="x"'`` -> ``('form-data', {'name': 'x'})``."""
    first, *rest = value.split(";")
    pairs = (item.partition("=") for item in rest)
    return first.strip(), {k.strip(): v.strip().strip('"') for k, _, v in pairs}


def stability_error(status: int, errors: list[str], name: str | None = None) -> Response:
    body = {
        "id": uuid.uuid4().hex,
        "name": name or _ERROR_NAMES.get(status, "internal_error"),
        "errors": errors,
    }
    return Response(orjson.dumps(body), status, media_type="application/json")


def megapixel_size(ratio: str) -> tuple[int, int]:
    """About 1024x1024 pixels in ``ratio``, each side a multiple of 64 (1:1 -> 1024x1024)."""
    width, _, height = ratio.partition(":")
    aspect = int(width) / int(height)
    return (
        64 * round(math.sqrt(1024 * 1024 * aspect) / 64),
        64 * round(math.sqrt(1024 * 1024 / aspect) / 64),
    )


def _form_problem(endpoint: str, form: dict[str, FormPart]) -> str | None:
    """What the real API would refuse with 400, or None."""
    prompt = form.get("prompt")
    if prompt is None or not 1 <= len(prompt.text) <= 10_000:
        return "prompt: is required and must be 1-10000 characters"
    text = {name: part.text for name, part in form.items() if part.filename is None}
    if text.get("aspect_ratio", "1:1") not in ASPECT_RATIOS:
        return f"aspect_ratio: must be one of {', '.join(ASPECT_RATIOS)}"
    if text.get("output_format", "png") not in OUTPUT_FORMATS[endpoint]:
        return f"output_format: must be one of {', '.join(OUTPUT_FORMATS[endpoint])}"
    if endpoint == "sd3" and text.get("model", "sd3.5-large") not in SD3_MODELS:
        return f"model: must be one of {', '.join(SD3_MODELS)}"
    if "style_preset" in text and text["style_preset"] not in STYLE_PRESETS:
        return "style_preset: unknown preset"
    if "seed" in text and not (text["seed"].isdigit() and int(text["seed"]) <= 4_294_967_294):
        return "seed: must be an integer in [0, 4294967294]"
    edits = "image" in form if endpoint == "ultra" else text.get("mode") == "image-to-image"
    if endpoint == "core" and "image" in form:
        return "image: not accepted by this endpoint"
    if edits and ("image" not in form or "strength" not in text):
        return "image and strength: both are required for image-to-image"
    if edits and not 0 <= float(text["strength"]) <= 1:
        return "strength: must be between 0 and 1"
    return None


def build_stability_fake(state: FakeState) -> Starlette:
    async def generate(request: Request) -> Response | DroppedConnection:
        body = await state.record(request)
        fault = state.faults.take()
        await apply_timing_fault(fault)
        if fault is not None and fault.kind == "reset":
            return DroppedConnection()
        if fault is not None and fault.kind == "status":
            response = stability_error(fault.status, [f"fake: injected HTTP {fault.status}"])
            if fault.retry_after is not None:
                response.headers["retry-after"] = f"{fault.retry_after:g}"
            return response
        presented = request.headers.get("authorization", "").removeprefix("Bearer ")
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            # Echoes the key it was given, as some providers do: the adapter must not repeat it.
            return stability_error(401, [f"authorization: invalid API key {presented!r}"])
        endpoint = request.path_params["endpoint"]
        if endpoint not in OUTPUT_FORMATS:
            return stability_error(404, [f"no endpoint /generate/{endpoint}"])
        if len(body) > MAX_BODY_BYTES:
            return stability_error(413, ["payload: larger than 10 MiB"])
        try:
            form = read_multipart(request.headers.get("content-type", ""), body)
        except ValueError as exc:
            return stability_error(400, [f"content-type: {exc}"])
        if problem := _form_problem(endpoint, form):
            return stability_error(400, [problem])
        if fault is not None and fault.kind == "safety" and state.extra.get("safety") != "filtered":
            return stability_error(403, [_MODERATION_TEXT], name="content_moderation")
        filtered = fault is not None and fault.kind == "safety"
        text = {name: part.text for name, part in form.items() if part.filename is None}
        fmt = text.get("output_format", "png")
        if "image" in form:
            try:
                width, height = Image.open(io.BytesIO(form["image"].data)).size
            except OSError:
                return stability_error(400, ["image: cannot be decoded"])
        else:
            width, height = megapixel_size(text.get("aspect_ratio", "1:1"))
        image = fake_image(width, height, fmt, "blurred" if filtered else text["prompt"])
        seed = int(text.get("seed", "0")) or zlib.crc32(text["prompt"].encode())
        finish = "CONTENT_FILTERED" if filtered else "SUCCESS"
        malformed = fault is not None and fault.kind == "malformed"
        if "application/json" in request.headers.get("accept", "image/*"):
            payload = orjson.dumps(
                {"image": base64.b64encode(image).decode(), "finish_reason": finish, "seed": seed}
            )
            return Response(payload[:40] if malformed else payload, media_type="application/json")
        headers = {"finish-reason": finish, "seed": str(seed)}
        data = image[: len(image) // 2] if malformed else image
        return Response(data, media_type=f"image/{fmt}", headers=headers)

    async def unknown_route(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return stability_error(status, [f"{request.method} {request.url.path}: no such route"])

    return Starlette(
        routes=[Route("/v2beta/stable-image/generate/{endpoint}", generate, methods=["POST"])],
        exception_handlers={404: unknown_route, 405: unknown_route},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Stability AI v2beta on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--api-key", default="test-key")
    args = parser.parse_args(argv)
    app = build_stability_fake(FakeState(api_key=args.api_key))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
