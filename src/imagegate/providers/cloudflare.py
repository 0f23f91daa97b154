"""Cloudflare Workers AI (the REST ``ai/run`` API) and custom Workers that wrap an image model.

Workers AI models differ in body and reply shape, so each upstream model has one row in
``WORKERS_AI_MODELS``: FLUX.1 schnell takes no size (its schema forbids extra properties) and
answers with a JSON envelope holding a base64 JPEG; SDXL takes a size and answers with raw PNG
bytes. A custom Worker (kind ``cloudflare_worker``) is whatever its owner deployed: we send the
prompt by GET query or POST JSON and accept any image it answers with, sniffing the type from
the bytes rather than trusting ``Content-Type``.

Safety refusals: the shape of Workers AI's NSFW error is UNCONFIRMED; an error whose message
mentions NSFW (``_SAFETY_MARKERS``) becomes ``ContentPolicyViolation``.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import httpx

from imagegate.catalog import ModelSpec, Target
from imagegate.errors import (
    ConfigurationError,
    ContentPolicyViolation,
    ProviderError,
    ProviderRejected,
    UnsupportedParameter,
)
from imagegate.models import NormalizedRequest, ProviderResult, RawImage, RequestKind
from imagegate.providers.base import single_reference_image
from imagegate.providers.http import (
    HttpProvider,
    HttpReply,
    UpstreamClient,
    raise_for_status,
    upstream_url,
)
from imagegate.settings import ProviderSettings

DEFAULT_BASE_URL = "https://api.cloudflare.com"

DEFAULT_STRENGTH = 0.35
"""Sent when an edit gives no ``strength``: SDXL's own default (1) ignores the input image."""

_SAFETY_MARKERS = ("nsfw",)
_EXCERPT_CHARS = 120


class ReplyStyle(enum.Enum):
    ENVELOPE_BASE64 = "envelope"
    """``{"result": {"image": "<base64>"}, "success": true, ...}``"""
    RAW_BYTES = "raw"
    """The image bytes themselves, no envelope."""


@dataclass(frozen=True, slots=True)
class WorkersAiModel:
    """What one Workers AI model's input schema accepts and how it replies."""

    reply: ReplyStyle
    steps_field: str
    max_steps: int
    default_steps: int | None = None
    """Sent when ``target.params`` sets none; None leaves the upstream default."""
    takes_size: bool = False
    takes_negative_prompt: bool = False
    edits: bool = False
    """Image-to-image via ``image_b64`` + ``strength``."""


WORKERS_AI_MODELS: Final[Mapping[str, WorkersAiModel]] = MappingProxyType(
    {
        "@cf/black-forest-labs/flux-1-schnell": WorkersAiModel(
            reply=ReplyStyle.ENVELOPE_BASE64, steps_field="steps", max_steps=8, default_steps=4
        ),
        "@cf/stabilityai/stable-diffusion-xl-base-1.0": WorkersAiModel(
            reply=ReplyStyle.RAW_BYTES,
            steps_field="num_steps",
            max_steps=20,
            takes_size=True,
            takes_negative_prompt=True,
            edits=True,
        ),
    }
)
"""Catalogue ``upstream_model`` -> input schema and reply style."""


def build_request(
    request: NormalizedRequest, target: Target, settings: ProviderSettings
) -> httpx.Request:
    """The ``ai/run`` call for one image; ``target.params`` are merged into the body last, and a
    step count above the model's maximum is lowered to it (the upstream refuses the call)."""
    spec = target.spec
    model = _workers_ai_model(spec)
    body: dict[str, object] = {"prompt": request.prompt}
    if model.default_steps is not None:
        body[model.steps_field] = model.default_steps
    if request.negative_prompt:
        if not model.takes_negative_prompt:
            raise UnsupportedParameter(
                f"Model {spec.name!r} does not take a negative_prompt.", param="negative_prompt"
            )
        body["negative_prompt"] = request.negative_prompt
    if model.takes_size:
        body["width"], body["height"] = request.size.width, request.size.height
    if request.seed is not None:
        body["seed"] = request.seed
    if request.kind is RequestKind.EDIT:
        body.update(_edit_fields(request, spec, model))
    body.update(target.params)
    if model.steps_field in body:
        body[model.steps_field] = min(int(str(body[model.steps_field])), model.max_steps)
    account = settings.account_id  # the provider's constructor checked it and the key
    base = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
    return httpx.Request(
        "POST",
        upstream_url(f"{base}/client/v4/accounts/{account}/ai/run/{spec.upstream_model}"),
        headers={"authorization": f"Bearer {_secret(settings)}"},
        json=body,
    )


def parse_response(reply: HttpReply, request: NormalizedRequest, target: Target) -> ProviderResult:
    """The image from an ``ai/run`` reply, in the style its model's row names."""
    if not reply.ok:
        _raise_for_cloudflare_error(reply)
    if _workers_ai_model(target.spec).reply is ReplyStyle.RAW_BYTES:
        return _result(reply.content, reply, request, target)
    envelope = reply.json()
    result = envelope.get("result") if isinstance(envelope, dict) else None
    encoded = result.get("image") if isinstance(result, dict) else None
    if not isinstance(encoded, str) or not encoded:
        raise ProviderError(f"{reply.provider} answered without an image: {_excerpt(reply)}")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderError(
            f"{reply.provider} returned an image that is not valid base64"
        ) from None
    return _result(data, reply, request, target)


def build_worker_request(
    request: NormalizedRequest, target: Target, settings: ProviderSettings
) -> httpx.Request:
    """A custom Worker call: ``GET {url}?prompt=...`` or a POST of JSON, as configured.

    GET sends the prompt and, when given, the seed; POST adds the size. Either carries the key
    as a bearer token when one is set, and ``target.params`` are merged in last.
    """
    url = settings.base_url or ""  # the provider's constructor checked it
    if request.kind is RequestKind.EDIT:
        raise UnsupportedParameter(
            f"Model {target.spec.name!r} does not take a reference image.", param="image"
        )
    fields: dict[str, object] = {"prompt": request.prompt}
    if settings.method == "POST":
        fields["width"], fields["height"] = request.size.width, request.size.height
    if request.seed is not None:
        fields["seed"] = request.seed
    fields.update(target.params)
    key = _secret(settings)
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if settings.method == "POST":
        return httpx.Request("POST", upstream_url(url), headers=headers, json=fields)
    # copy_merge_params keeps a query the URL already has (a ?token=... some Workers use).
    query = {
        name: str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in fields.items()
    }
    return httpx.Request("GET", httpx.URL(url).copy_merge_params(query), headers=headers)


def parse_worker_response(
    reply: HttpReply, request: NormalizedRequest, target: Target
) -> ProviderResult:
    """The image a custom Worker answered with, whatever ``Content-Type`` it claimed."""
    if not reply.ok:
        _raise_for_cloudflare_error(reply)
    return _result(reply.content, reply, request, target)


class CloudflareProvider(HttpProvider):
    """A configured ``cloudflare`` (Workers AI REST) provider instance."""

    def __init__(self, name: str, settings: ProviderSettings, client: UpstreamClient) -> None:
        required = {"account_id": settings.account_id, "api_key": _secret(settings)}
        _check_settings(name, settings, "cloudflare", **required)
        super().__init__(name, settings, client, build_request, parse_response)


class CloudflareWorkerProvider(HttpProvider):
    """A configured ``cloudflare_worker``: a self-deployed Worker at ``base_url``."""

    def __init__(self, name: str, settings: ProviderSettings, client: UpstreamClient) -> None:
        _check_settings(name, settings, "cloudflare_worker", base_url=settings.base_url)
        super().__init__(name, settings, client, build_worker_request, parse_worker_response)


def _sniff_image_mime(data: bytes) -> str | None:
    """The image type the bytes' magic number names (PNG, JPEG, WebP), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _is_complete(data: bytes, mime: str) -> bool:
    """Whether the bytes reach the format's end marker: a dropped or cut body must not pass."""
    if mime == "image/png":
        return data.endswith(b"IEND\xaeB`\x82")
    if mime == "image/jpeg":
        return data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")
    return len(data) >= 8 + int.from_bytes(data[4:8], "little")  # RIFF: size after 8 bytes


def _result(
    data: bytes, reply: HttpReply, request: NormalizedRequest, target: Target
) -> ProviderResult:
    mime = _sniff_image_mime(data)
    if mime is None:
        kind = reply.headers.get("content-type", "no Content-Type")
        raise ProviderError(
            f"{reply.provider} answered with {kind} instead of an image: {_excerpt(reply)}"
        )
    if not _is_complete(data, mime):
        raise ProviderError(f"{reply.provider} sent a truncated {mime} ({len(data)} bytes)")
    spec = target.spec
    return ProviderResult(
        provider=reply.provider,
        upstream_model=spec.upstream_model,
        images=(RawImage(data=data, mime=mime, seed=request.seed),),
        cost_micro_usd=spec.cost_micro_usd(request.quality, request.size, 1, None),
    )


def _edit_fields(
    request: NormalizedRequest, spec: ModelSpec, model: WorkersAiModel
) -> dict[str, object]:
    image = single_reference_image(request, spec, takes_edits=model.edits)
    strength = DEFAULT_STRENGTH if request.strength is None else request.strength
    return {"image_b64": base64.b64encode(image.data).decode(), "strength": strength}


def _workers_ai_model(spec: ModelSpec) -> WorkersAiModel:
    model = WORKERS_AI_MODELS.get(spec.upstream_model)
    if model is None:
        raise ProviderRejected(
            f"imagegate does not know the input schema of Workers AI model "
            f"{spec.upstream_model!r} (model {spec.name!r}); known: {', '.join(WORKERS_AI_MODELS)}",
            code="upstream_model_not_found",
        )
    return model


def _secret(settings: ProviderSettings) -> str:
    return settings.api_key.get_secret_value() if settings.api_key is not None else ""


def _check_settings(
    name: str, settings: ProviderSettings, kind: str, **required: str | None
) -> None:
    """Refuse at start-up what would make every call fail."""
    if settings.kind != kind:
        raise ConfigurationError(f"provider {name!r} is a {settings.kind!r}, not a {kind!r}")
    for field, value in required.items():
        if not value:
            raise ConfigurationError(f"provider {name!r} ({kind}) needs {field}", param=field)


def _excerpt(reply: HttpReply) -> str:
    text = reply.content[:_EXCERPT_CHARS].decode("utf-8", "replace")
    return repr(" ".join(text.split())) + ("…" if len(reply.content) > _EXCERPT_CHARS else "")


def _raise_for_cloudflare_error(reply: HttpReply) -> None:
    """Cloudflare's envelope is ``{"success": false, "errors": [{"code", "message"}]}``; 403 code
    10000 (credentials) and 429 codes 3036/3040 (quota, capacity) need nothing beyond the
    status, which ``raise_for_status`` classifies."""
    errors = reply.json_object().get("errors")
    texts = [
        f"{e.get('message', '')} (code {e.get('code')})".strip()
        for e in (errors if isinstance(errors, list) else [])
        if isinstance(e, dict)
    ]
    message = "; ".join(texts) or (_excerpt(reply) if reply.content else None)
    refused = 400 <= reply.status < 500 and reply.status not in (401, 403)  # 401/403: our key
    if refused and any(marker in (message or "").lower() for marker in _SAFETY_MARKERS):
        raise ContentPolicyViolation(
            f"{reply.provider}'s safety filter refused the request: {message}", param="prompt"
        )
    raise_for_status(reply, message)
