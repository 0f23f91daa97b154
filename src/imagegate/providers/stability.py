"""Stability AI's Stable Image API (v2beta): Core, Ultra and the SD3.x family.

Three endpoints, ``POST /v2beta/stable-image/generate/{core|ultra|sd3}``, one wire shape: the
body is always ``multipart/form-data`` (text fields are form parts too, even without an image)
and we ask for ``Accept: application/json`` so the image comes back as base64 next to its
``finish_reason`` and ``seed``. Sizes are not sent: the upstream takes an aspect ratio and picks
the pixel size itself (about one megapixel), so the image may not have the requested size.

Safety refusals come two ways and both become ``ContentPolicyViolation``: HTTP 403 named
``content_moderation`` (the prompt or input image), and HTTP 200 with
``finish_reason=CONTENT_FILTERED`` (the output; the image it carries is blurred and never handed
back). One call makes one image: the catalogue sets ``max_n_per_call: 1`` and the router splits.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import httpx

from imagegate.catalog import ModelSpec, Target, nearest_aspect_ratio
from imagegate.errors import (
    ConfigurationError,
    ContentPolicyViolation,
    ProviderError,
    ProviderRejected,
    UnsupportedParameter,
)
from imagegate.models import InputImage, NormalizedRequest, ProviderResult, RawImage, RequestKind
from imagegate.providers.base import single_reference_image
from imagegate.providers.http import (
    HttpProvider,
    HttpReply,
    UpstreamClient,
    raise_for_status,
    upstream_url,
)
from imagegate.settings import ProviderSettings

DEFAULT_BASE_URL = "https://api.stability.ai"

DEFAULT_STRENGTH = 0.35
"""Sent when an edit request gives no ``strength``: Ultra refuses an image without one. 0 keeps
the reference image, 1 ignores it; 0.35 keeps its composition and changes its rendering."""

_MAX_MESSAGE_CHARS = 500


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How one catalogue ``upstream_model`` is called."""

    path: str
    """The segment after ``/v2beta/stable-image/generate/``."""
    model_field: str | None = None
    """The ``model`` form field (the ``/sd3`` endpoint serves several models)."""
    edits: bool = False
    """Whether it takes a reference image (image-to-image)."""
    edit_mode: str | None = None
    """The ``mode`` form field sent with a reference image, where the endpoint needs one."""


def _sd3(model: str) -> Endpoint:
    return Endpoint("sd3", model_field=model, edits=True, edit_mode="image-to-image")


ENDPOINTS: Final[Mapping[str, Endpoint]] = MappingProxyType(
    {
        "core": Endpoint("core"),
        "ultra": Endpoint("ultra", edits=True),
        "sd3.5-large": _sd3("sd3.5-large"),
        "sd3.5-large-turbo": _sd3("sd3.5-large-turbo"),
        "sd3.5-medium": _sd3("sd3.5-medium"),
        "sd3.5-flash": _sd3("sd3.5-flash"),
        "sd3-large": _sd3("sd3-large"),
        "sd3-large-turbo": _sd3("sd3-large-turbo"),
        "sd3-medium": _sd3("sd3-medium"),
    }
)
"""Catalogue ``upstream_model`` -> endpoint. Every ``/sd3`` model is a ``model`` form field,
never a path segment: ``/generate/sd3.5-large`` is a 404."""


def build_request(
    request: NormalizedRequest, target: Target, settings: ProviderSettings
) -> httpx.Request:
    """The multipart request for one image; ``target.params`` are merged into the form last."""
    spec = target.spec
    endpoint = _endpoint(spec)
    fields: dict[str, str] = {
        "prompt": request.prompt,
        "output_format": _asked_format(request, target),
    }
    if endpoint.model_field is not None:
        fields["model"] = endpoint.model_field
    if request.negative_prompt:
        if not spec.supports_negative_prompt:
            raise UnsupportedParameter(
                f"Model {spec.name!r} does not take a negative_prompt.", param="negative_prompt"
            )
        fields["negative_prompt"] = request.negative_prompt
    if request.seed is not None:
        fields["seed"] = str(request.seed)  # 0 asks for a random seed, as omitting it does
    if request.style is not None:
        fields["style_preset"] = request.style
    files: list[tuple[str, tuple[str, bytes, str]]] = []
    if request.kind is RequestKind.EDIT:
        image = _reference_image(request, spec, endpoint)
        if endpoint.edit_mode is not None:
            fields["mode"] = endpoint.edit_mode
        strength = DEFAULT_STRENGTH if request.strength is None else request.strength
        fields["strength"] = f"{strength:g}"
        files.append(("image", (f"image.{image.extension}", image.data, image.mime)))
    elif spec.aspect_ratios:  # the upstream ignores aspect_ratio when given an image
        fields["aspect_ratio"] = nearest_aspect_ratio(request.size, spec.aspect_ratios)
    fields.update({name: _form_value(value) for name, value in target.params.items()})
    # (None, text) parts carry no filename: httpx sends them as plain form fields, and the body
    # stays multipart even when there is no file, as the upstream requires.
    parts: list[tuple[str, tuple[str | None, str | bytes, str | None]]] = [
        (name, (None, value, None)) for name, value in fields.items()
    ]
    parts.extend(files)
    base = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
    return httpx.Request(
        "POST",
        upstream_url(f"{base}/v2beta/stable-image/generate/{endpoint.path}"),
        headers={"authorization": f"Bearer {_api_key(settings)}", "accept": "application/json"},
        files=parts,
    )


def parse_response(reply: HttpReply, request: NormalizedRequest, target: Target) -> ProviderResult:
    """The image and its seed from a JSON-accept reply; every failure becomes its error class."""
    if not reply.ok:
        _raise_for_stability_error(reply)
    body = reply.json()
    if not isinstance(body, dict):
        raise ProviderError(f"{reply.provider} returned JSON without an image object")
    finish_reason = body.get("finish_reason")
    if finish_reason == "CONTENT_FILTERED":
        raise ContentPolicyViolation(
            f"{reply.provider}'s safety filter blocked the generated image; try another prompt.",
            param="prompt",
        )
    if finish_reason not in (None, "SUCCESS"):
        raise ProviderError(f"{reply.provider} did not finish the image ({finish_reason!r})")
    data = _decode_image(body.get("image"), reply.provider)
    seed = body.get("seed")
    spec = target.spec
    image = RawImage(
        data=data,
        mime=f"image/{_asked_format(request, target)}",
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
    )
    return ProviderResult(
        provider=reply.provider,
        upstream_model=spec.upstream_model,
        images=(image,),
        cost_micro_usd=spec.cost_micro_usd(request.quality, request.size, 1, None),
    )


class StabilityProvider(HttpProvider):
    """A configured ``stability`` provider instance."""

    def __init__(self, name: str, settings: ProviderSettings, client: UpstreamClient) -> None:
        if settings.kind != "stability":
            raise ConfigurationError(
                f"provider {name!r}: StabilityProvider cannot serve {settings.kind!r}"
            )
        _api_key(settings, name)
        super().__init__(name, settings, client, build_request, parse_response)


def _endpoint(spec: ModelSpec) -> Endpoint:
    endpoint = ENDPOINTS.get(spec.upstream_model)
    if endpoint is None:
        raise ProviderRejected(
            f"Stability AI has no endpoint for upstream_model {spec.upstream_model!r} "
            f"(model {spec.name!r}); known: {', '.join(ENDPOINTS)}",
            code="upstream_model_not_found",
        )
    return endpoint


def _reference_image(request: NormalizedRequest, spec: ModelSpec, endpoint: Endpoint) -> InputImage:
    return single_reference_image(request, spec, takes_edits=endpoint.edits)


def _asked_format(request: NormalizedRequest, target: Target) -> str:
    """The ``output_format`` sent: the target's params may override the catalogue's choice."""
    override = target.params.get("output_format")
    return str(override) if override else target.spec.upstream_format(request.output_format).value


def _api_key(settings: ProviderSettings, name: str = "stability") -> str:
    key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    if not key:
        raise ConfigurationError(f"provider {name!r} needs an API key in api_key", param="api_key")
    return key


def _form_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _decode_image(value: object, provider: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ProviderError(f"{provider} returned a reply without an image")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderError(f"{provider} returned an image that is not valid base64") from None


def _raise_for_stability_error(reply: HttpReply) -> None:
    """Stability's envelope is ``{"id", "name", "errors": [...]}``; a body that is not one (a
    proxy's HTML page) still gets the class its status deserves."""
    envelope = reply.json_object()
    errors = envelope.get("errors")
    texts = [str(e) for e in errors] if isinstance(errors, list) else []
    message = "; ".join(texts)[:_MAX_MESSAGE_CHARS] or None
    if envelope.get("name") == "content_moderation":
        raise ContentPolicyViolation(
            f"{reply.provider}'s content moderation refused the request"
            + (f": {message}" if message else "."),
            param="prompt",
        )
    raise_for_status(reply, message)
