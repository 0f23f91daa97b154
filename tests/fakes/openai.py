"""Loopback fake of the OpenAI Images API (``/v1/images/generations`` and ``/v1/images/edits``).

It speaks the real wire format (the official ``openai`` SDK can call it) and answers the way
OpenAI does, as described in /work/shared/providers.md section 1: the key is checked before the
body, the body is validated per model with OpenAI's error envelope and codes, and successes carry
real image bytes of the asked size and format, ``revised_prompt`` (dall-e-3) and ``usage`` (GPT
image models). It is as strict as OpenAI or stricter: unknown fields are refused, as OpenAI does.

Answers are instant unless a fault says otherwise (images come from ``fake_image``'s cache), so
benchmarks can use it too: ``python -m tests.fakes.openai --port 8101``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import io
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp
from tests.fakes.images import fake_image
from tests.fakes.server import DroppedConnection, FakeState, Fault, apply_timing_fault

_GPT_SIZES = frozenset({"1024x1024", "1536x1024", "1024x1536"})
_GPT_QUALITIES = frozenset({"auto", "low", "medium", "high"})
_GPT_ONLY_FIELDS = ("output_format", "output_compression", "background", "moderation")
_KNOWN_FIELDS = frozenset(
    {"model", "prompt", "n", "size", "quality", "response_format", "style", "user", "stream"}
    | {"partial_images", "input_fidelity", *_GPT_ONLY_FIELDS}
)
_OUTPUT_TOKENS = {  # gpt-image-1, community-measured (providers.md); 1056 when not listed
    ("low", "1024x1024"): 272,
    ("low", "1024x1536"): 408,
    ("low", "1536x1024"): 400,
    ("medium", "1024x1024"): 1056,
    ("medium", "1024x1536"): 1584,
    ("medium", "1536x1024"): 1568,
    ("high", "1024x1024"): 4160,
    ("high", "1024x1536"): 6240,
    ("high", "1536x1024"): 6208,
}
_TOKENS_PER_INPUT_IMAGE = 388  # the fake's own figure: OpenAI publishes none


@dataclass(frozen=True)
class FakeModel:
    gpt_image: bool
    sizes: frozenset[str] | None
    """``None``: any size within gpt-image-2's rules."""
    qualities: frozenset[str]
    max_prompt_chars: int
    max_n: int = 10
    max_input_images: int = 16
    transparent: bool = True


_GPT_IMAGE_1 = FakeModel(True, _GPT_SIZES, _GPT_QUALITIES, 32000)
_GPT_IMAGE_2 = FakeModel(True, None, _GPT_QUALITIES, 32000, transparent=False)
MODELS: dict[str, FakeModel] = {
    "gpt-image-1": _GPT_IMAGE_1,
    "gpt-image-1-mini": _GPT_IMAGE_1,
    "gpt-image-1.5": _GPT_IMAGE_1,
    "chatgpt-image-latest": _GPT_IMAGE_1,
    "gpt-image-2": _GPT_IMAGE_2,
    "gpt-image-2-2026-04-21": _GPT_IMAGE_2,
    "dall-e-2": FakeModel(
        gpt_image=False,
        sizes=frozenset({"256x256", "512x512", "1024x1024"}),
        qualities=frozenset({"standard"}),
        max_prompt_chars=1000,
        max_input_images=1,
    ),
    "dall-e-3": FakeModel(
        gpt_image=False,
        sizes=frozenset({"1024x1024", "1792x1024", "1024x1792"}),
        qualities=frozenset({"standard", "hd"}),
        max_prompt_chars=4000,
        max_n=1,
        max_input_images=0,
    ),
}


@dataclass(frozen=True)
class Upload:
    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class Form:
    fields: dict[str, str]
    files: list[Upload]


def parse_form(content_type: str, body: bytes) -> Form:
    """``multipart/form-data`` as httpx and the SDKs send it (python-multipart is not installed).

    Also what tests use to look at an edit the fake received: ``parse_form(call.headers[
    "content-type"], call.body)``.
    """
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or boundary is None:
        raise ValueError("the body is not multipart/form-data")
    fields: dict[str, str] = {}
    files: list[Upload] = []
    for chunk in body.split(b"--" + boundary.group(1).encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a multipart part has no header end")
        headers = {}
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        params = dict(re.findall(r'(\w+)="([^"]*)"', headers.get("content-disposition", "")))
        if "name" not in params:
            raise ValueError("a multipart part has no name")
        data = data.removesuffix(b"\r\n")
        if "filename" in params:
            upload = Upload(params["name"], params["filename"], headers.get("content-type"), data)
            files.append(upload)
        else:
            fields[params["name"]] = data.decode()
    return Form(fields, files)


class OpenAIError(Exception):
    """An answer in OpenAI's error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}
        self.envelope = {"error": {"message": message, "type": type, "param": param, "code": code}}

    def response(self) -> Response:
        return _json(self.envelope, self.status, self.headers)


@dataclass
class _Call:
    fields: dict[str, Any]
    images: list[bytes] = field(default_factory=list)
    mask: bytes | None = None


def build_openai_fake(state: FakeState) -> Starlette:
    async def generations(request: Request) -> ASGIApp:
        return await _serve(request, state, edit=False)

    async def edits(request: Request) -> ASGIApp:
        return await _serve(request, state, edit=True)

    async def files(request: Request) -> Response:
        """The URLs DALL·E answers with by default (``response_format=url``)."""
        found = re.fullmatch(r"(\d+)x(\d+)-(\d+)\.(png|jpeg|webp)", request.path_params["name"])
        if found is None:
            return OpenAIError(404, "No such file.").response()
        image = fake_image(int(found[1]), int(found[2]), found[4], found[3])
        return Response(image, media_type=f"image/{found[4]}")

    async def calls(_: Request) -> Response:
        """Not OpenAI's: how many calls this fake has answered (for out-of-process counting)."""
        return _json({"count": len(state.calls)}, 200, {})

    return Starlette(
        routes=[
            Route("/v1/images/generations", generations, methods=["POST"]),
            Route("/v1/images/edits", edits, methods=["POST"]),
            Route("/v1/fake-files/{name}", files, methods=["GET"]),
            Route("/fake/calls", calls, methods=["GET"]),
        ]
    )


async def _serve(request: Request, state: FakeState, *, edit: bool) -> ASGIApp:
    body = await state.record(request)
    fault = state.faults.take()
    await apply_timing_fault(fault)
    try:
        if fault is not None and fault.kind == "reset":
            return DroppedConnection()
        if fault is not None and fault.kind == "status":
            raise _status_fault(fault)
        if fault is not None and fault.kind == "malformed":
            return Response(b'{"created": 1, "data": [{"b64_json": "iVBORw0KG', 200)
        _check_key(request.headers.get("authorization", ""), state.api_key)
        content_type = request.headers.get("content-type", "")
        call = _read_edit(content_type, body) if edit else _read_json(body)
        model_name, model = _validate(call, edit=edit)
        if fault is not None and fault.kind == "safety":
            raise _safety_refusal(model)
        return _json(_success(request, call, model_name, model), 200)
    except OpenAIError as error:
        return error.response()


def _json(payload: object, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(payload),
        status,
        headers={
            "x-request-id": f"req_{uuid.uuid4().hex}",
            "openai-processing-ms": "1",
            "openai-version": "2020-10-01",
            **(headers or {}),
        },
        media_type="application/json",
    )


def _status_fault(fault: Fault) -> OpenAIError:
    headers = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
    if fault.status == 429:
        message = "Rate limit reached for images per minute (IPM). Please try again later."
        return OpenAIError(
            429, message, type="requests", code="rate_limit_exceeded", headers=headers
        )
    if fault.status >= 500:
        message = (
            "The engine is currently overloaded, please try again later."
            if fault.status == 503
            else "The server had an error while processing your request. Sorry about that!"
        )
        return OpenAIError(fault.status, message, type="server_error", headers=headers)
    return OpenAIError(fault.status, f"Fake error (HTTP {fault.status}).", headers=headers)


def _safety_refusal(model: FakeModel) -> OpenAIError:
    if model.gpt_image:
        message = (
            "Your request was rejected by the safety system. If you believe this is an error, "
            "contact us at help.openai.com."
        )
        return OpenAIError(
            400, message, type="image_generation_user_error", code="moderation_blocked"
        )
    message = (
        "Your request was rejected as a result of our safety system. Your prompt may contain "
        "text that is not allowed by our safety system."
    )
    return OpenAIError(400, message, code="content_policy_violation")


def _check_key(authorization: str, api_key: str) -> None:
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() == "bearer" and given == api_key:
        return
    masked = f"{given[:3]}{'*' * max(len(given) - 7, 0)}{given[-4:]}" if len(given) > 8 else "****"
    message = (
        f"Incorrect API key provided: {masked}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
        if given
        else "You didn't provide an API key. You need to provide your API key in an "
        "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    )
    raise OpenAIError(401, message, code="invalid_api_key")


def _read_json(body: bytes) -> _Call:
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise OpenAIError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(fields, dict):
        raise OpenAIError(400, "The request body must be a JSON object.")
    return _Call(fields)


def _read_edit(content_type: str, body: bytes) -> _Call:
    if content_type.startswith("application/json"):
        call = _read_json(body)
        refs = call.fields.pop("images", None)
        mask = call.fields.pop("mask", None)
        if not isinstance(refs, list):
            raise OpenAIError(400, "Missing required parameter: 'images'.", param="images")
        call.images = [_data_url(ref, "images") for ref in refs]
        call.mask = _data_url(mask, "mask") if mask is not None else None
        return call
    try:
        form = parse_form(content_type, body)
    except ValueError as exc:
        raise OpenAIError(400, f"Could not parse the multipart form: {exc}.") from None
    fields: dict[str, Any] = dict(form.fields)
    for name in ("n", "output_compression", "partial_images"):
        if name in fields:
            try:
                fields[name] = int(fields[name])
            except ValueError:
                raise OpenAIError(
                    400, f"Invalid {name}.", code="invalid_value", param=name
                ) from None
    images = [f.data for f in form.files if f.field in ("image", "image[]")]
    masks = [f.data for f in form.files if f.field == "mask"]
    return _Call(fields, images, masks[0] if masks else None)


def _data_url(ref: object, param: str) -> bytes:
    url = ref.get("image_url") if isinstance(ref, dict) else None
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
        raise OpenAIError(400, "The fake accepts only data: URLs as image_url.", param=param)
    try:
        return base64.b64decode(url.partition(";base64,")[2], validate=True)
    except binascii.Error:
        raise OpenAIError(400, "Invalid base64 image data.", param=param) from None


def _validate(call: _Call, *, edit: bool) -> tuple[str, FakeModel]:
    f = call.fields
    name = str(f.get("model") or ("gpt-image-1.5" if edit else "dall-e-2"))
    model = MODELS.get(name)
    if model is None:
        message = f"The model `{name}` does not exist or you do not have access to it."
        raise OpenAIError(404, message, code="model_not_found")
    for key in f:
        if key not in _KNOWN_FIELDS or (
            (key == "response_format" and model.gpt_image)
            or (key in _GPT_ONLY_FIELDS and not model.gpt_image)
            or (key == "style" and name != "dall-e-3")
        ):
            raise _invalid(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
    prompt = f.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        message = "Missing required parameter: 'prompt'."
        raise _invalid(message, "prompt", "missing_required_parameter")
    if len(prompt) > model.max_prompt_chars:
        message = f"Prompt is too long: at most {model.max_prompt_chars} characters."
        raise _invalid(message, "prompt", "string_above_max_length")
    n = f.get("n", 1)
    if not isinstance(n, int) or not 1 <= n <= model.max_n:
        raise _invalid(f"Invalid 'n': must be between 1 and {model.max_n}.", "n")
    if not _size_ok(str(f.get("size", "auto" if model.gpt_image else "1024x1024")), model):
        raise _invalid("The size is not supported by this model.", "size", "invalid_size")
    _check_choice(f, "quality", model.qualities)
    _check_choice(f, "response_format", {"url", "b64_json"})
    _check_choice(f, "style", {"vivid", "natural"})
    _check_choice(f, "output_format", {"png", "jpeg", "webp"})
    _check_choice(f, "background", {"auto", "opaque", "transparent"})
    _check_choice(f, "moderation", {"auto", "low"})
    if f.get("stream"):
        raise _invalid("The fake does not stream.", "stream")
    compression = f.get("output_compression", 100)
    if not isinstance(compression, int) or not 0 <= compression <= 100:
        raise _invalid("Invalid 'output_compression': must be 0-100.", "output_compression")
    if f.get("background") == "transparent" and (
        not model.transparent or f.get("output_format") == "jpeg"
    ):
        raise _invalid("Transparent background is not supported here.", "background")
    if edit:
        _validate_edit_images(call, model)
    return name, model


def _validate_edit_images(call: _Call, model: FakeModel) -> None:
    if not 1 <= len(call.images) <= model.max_input_images:
        limit = model.max_input_images
        message = (
            f"Invalid 'image': this model takes 1 to {limit} images."
            if limit
            else ("This model does not support image edits.")
        )
        raise _invalid(message, "image")
    for data in call.images:
        kind = _sniff(data)
        if kind is None or (not model.gpt_image and kind != "png"):
            raise _invalid("Invalid image file or mode.", "image", "invalid_image_format")
    first = _dimensions(call.images[0])
    if not model.gpt_image and first[0] != first[1]:
        raise _invalid("Uploaded image must be square.", "image")
    if call.mask is not None and (_sniff(call.mask) != "png" or _dimensions(call.mask) != first):
        raise _invalid("The mask must be a PNG of the same size as the image.", "mask")


def _invalid(message: str, param: str, code: str = "invalid_value") -> OpenAIError:
    return OpenAIError(400, message, code=code, param=param)


def _check_choice(fields: dict[str, Any], name: str, allowed: set[str] | frozenset[str]) -> None:
    if name in fields and fields[name] not in allowed:
        choices = ", ".join(sorted(allowed))
        raise _invalid(f"Invalid value for '{name}': supported values are {choices}.", name)


def _size_ok(size: str, model: FakeModel) -> bool:
    if size == "auto":
        return model.gpt_image
    if model.sizes is not None:
        return size in model.sizes
    width, _, height = size.partition("x")
    if not (width.isdigit() and height.isdigit()):
        return False
    w, h = int(width), int(height)
    multiples_of_16 = w > 0 and h > 0 and w % 16 == 0 and h % 16 == 0
    return multiples_of_16 and 1 / 3 <= w / h <= 3 and max(w, h) <= 3840 and w * h <= 3840 * 2160


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _dimensions(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def _success(request: Request, call: _Call, name: str, model: FakeModel) -> dict[str, Any]:
    f = call.fields
    size = str(f.get("size", "auto"))
    size = "1024x1024" if size == "auto" else size
    width, height = (int(side) for side in size.split("x"))
    fmt = str(f.get("output_format", "png")) if model.gpt_image else "png"
    n = int(f.get("n", 1))
    as_url = not model.gpt_image and f.get("response_format", "url") == "url"
    data: list[dict[str, Any]] = []
    for index in range(n):
        item: dict[str, Any] = (
            {"url": f"{request.base_url}v1/fake-files/{width}x{height}-{index}.{fmt}"}
            if as_url
            else {"b64_json": _b64_image(width, height, fmt, index)}
        )
        if name == "dall-e-3":
            item["revised_prompt"] = f"A detailed illustration of {f['prompt']}"
        data.append(item)
    payload: dict[str, Any] = {"created": int(time.time()), "data": data}
    if model.gpt_image:
        quality = str(f.get("quality", "auto"))
        quality = "medium" if quality == "auto" else quality
        payload |= {
            "background": "opaque" if f.get("background") != "transparent" else "transparent",
            "output_format": fmt,
            "size": size,
            "quality": quality,
            "usage": _usage(str(f["prompt"]), len(call.images), quality, size, n),
        }
    return payload


def _usage(prompt: str, input_images: int, quality: str, size: str, n: int) -> dict[str, Any]:
    text_tokens = max(1, len(prompt) // 4)
    image_tokens = input_images * _TOKENS_PER_INPUT_IMAGE
    output_tokens = _OUTPUT_TOKENS.get((quality, size), 1056) * n
    return {
        "input_tokens": text_tokens + image_tokens,
        "output_tokens": output_tokens,
        "total_tokens": text_tokens + image_tokens + output_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        "output_tokens_details": {"image_tokens": output_tokens, "text_tokens": 0},
    }


@functools.lru_cache(maxsize=256)
def _b64_image(width: int, height: int, fmt: str, index: int) -> str:
    return base64.b64encode(fake_image(width, height, fmt, str(index))).decode("ascii")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the fake OpenAI Images API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--api-key", default=FakeState().api_key)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each call")
    args = parser.parse_args(argv)
    state = FakeState(api_key=args.api_key)
    if args.latency > 0:
        state.faults.random(1.0, [Fault.latency(args.latency)])
    uvicorn.run(
        build_openai_fake(state),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
