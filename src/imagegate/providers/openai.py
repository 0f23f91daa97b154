"""OpenAI Images API: OpenAI itself (kind ``openai``) and any server speaking its wire format
(kind ``openai_compatible``: LocalAI, another imagegate, ...) at a configured ``base_url``.

Generations are a JSON POST to ``{base}/images/generations``; edits a multipart POST to
``{base}/images/edits`` with the reference images as repeated ``image[]`` parts.

What a model accepts is read from its catalogue entry, not from its name. A model that encodes
several formats itself (``native_output_formats``) is a GPT image model: it takes
``output_format``/``output_compression``, always answers in base64 and rejects
``response_format``. The others (DALL·E) make PNG only and answer with URLs that expire after an
hour unless asked for ``b64_json``, so imagegate always asks; it never downloads upstream URLs.
``style``, ``background``, ``seed`` and ``negative_prompt`` are sent only where the entry lists
them (``_OPTIONAL_FIELDS``). A route's ``target.params`` go in last; a ``null`` there removes a
field (e.g. ``response_format`` behind a proxy to OpenAI's GPT image models).

OpenAI-compatible servers are asked for ``b64_json`` whatever the model: like DALL·E (and like
imagegate's own API) they answer with URLs by default.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import orjson

from imagegate.catalog import ModelSpec, Target
from imagegate.errors import (
    ConfigurationError,
    ContentPolicyViolation,
    ProviderError,
    ProviderRejected,
)
from imagegate.models import (
    InputImage,
    NormalizedRequest,
    OutputFormat,
    ProviderResult,
    RawImage,
    RequestKind,
)
from imagegate.providers.http import (
    HttpProvider,
    HttpReply,
    UpstreamClient,
    raise_for_status,
    upstream_url,
)
from imagegate.settings import ProviderSettings

OPENAI_API_BASE = "https://api.openai.com/v1"

SAFETY_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
"""Error codes of OpenAI's safety system: GPT image models and DALL·E respectively."""

_OPTIONAL_FIELDS: tuple[
    tuple[str, Callable[[ModelSpec], bool], Callable[[NormalizedRequest], object]], ...
] = (
    # (wire field, whether the catalogue entry takes it, its value in the request)
    ("style", lambda spec: bool(spec.styles), lambda request: request.style),
    ("background", lambda spec: bool(spec.backgrounds), lambda request: request.background),
    ("seed", lambda spec: spec.supports_seed, lambda request: request.seed),
    (
        "negative_prompt",
        lambda spec: spec.supports_negative_prompt,
        lambda request: request.negative_prompt,
    ),
)

_USAGE_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # (flattened name, path in OpenAI's ``usage``)
    ("input_tokens", ("input_tokens",)),
    ("output_tokens", ("output_tokens",)),
    ("total_tokens", ("total_tokens",)),
    ("input_text_tokens", ("input_tokens_details", "text_tokens")),
    ("input_image_tokens", ("input_tokens_details", "image_tokens")),
)


def build_request(
    request: NormalizedRequest, target: Target, settings: ProviderSettings
) -> httpx.Request:
    """The HTTP request for one call: JSON for generations, multipart for edits."""
    base = (settings.base_url or OPENAI_API_BASE).rstrip("/")
    headers = {"accept": "application/json"}
    if settings.api_key is not None and settings.api_key.get_secret_value():
        headers["authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    fields = _body_fields(request, target, settings)
    if request.kind is RequestKind.EDIT:
        return httpx.Request(
            "POST",
            upstream_url(f"{base}/images/edits"),
            headers=headers,
            data={name: _form_value(value) for name, value in fields.items()},
            files=_edit_files(request, target.spec),
        )
    return httpx.Request(
        "POST",
        upstream_url(f"{base}/images/generations"),
        headers={**headers, "content-type": "application/json"},
        content=orjson.dumps(fields),
    )


def parse_response(reply: HttpReply, request: NormalizedRequest, target: Target) -> ProviderResult:
    """Images, usage and cost from a reply; every failure becomes its ``imagegate.errors`` class."""
    _raise_for_openai_error(reply)
    body = reply.json()
    items = body.get("data") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ProviderError(f"{reply.provider} answered HTTP {reply.status} without a data list")
    mime = _answer_format(body, request, target).mime
    images = tuple(
        RawImage(data=data, mime=mime, revised_prompt=_revised_prompt(item))
        for item in items
        if (data := _decoded_image(item, reply.provider))
    )[: request.n]  # the contract is at most n; extras would be billed as more
    if not images:
        if any(isinstance(item, dict) and item.get("url") for item in items):
            raise ProviderRejected(
                f"{reply.provider} answered with image URLs, not base64 data: imagegate asks "
                "for response_format=b64_json and never downloads upstream URLs. Check that the "
                "server honours response_format.",
                code="upstream_returned_url",
            )
        raise ProviderError(f"{reply.provider} answered HTTP {reply.status} with no image data")
    usage = _flattened_usage(body.get("usage"))
    cost = target.spec.cost_micro_usd(request.quality, request.size, len(images), usage)
    return ProviderResult(
        provider=reply.provider,
        upstream_model=target.spec.upstream_model,
        images=images,
        cost_micro_usd=cost,
        usage=usage,
    )


class OpenAIProvider(HttpProvider):
    """One configured OpenAI (or OpenAI-compatible) service over the shared HTTP client."""

    def __init__(self, name: str, settings: ProviderSettings, client: UpstreamClient) -> None:
        if settings.kind == "openai_compatible" and not settings.base_url:
            raise ConfigurationError(
                f"provider {name!r} is openai_compatible and needs a base_url "
                "(e.g. http://localhost:8080/v1)",
                param=f"providers.{name}.base_url",
            )
        super().__init__(name, settings, client, build_request, parse_response)


def _encodes_own_formats(spec: ModelSpec) -> bool:
    """GPT image models encode png/jpeg/webp themselves; DALL·E makes PNG only. An entry with no
    ``native_output_formats`` (a compatible server) is taken at its word: any format."""
    return len(spec.native_output_formats) != 1


def _body_fields(
    request: NormalizedRequest, target: Target, settings: ProviderSettings
) -> dict[str, object]:
    spec = target.spec
    fields: dict[str, object] = {
        "model": spec.upstream_model,
        "prompt": request.prompt,
        "n": request.n,
        "size": str(request.size),
        "quality": request.quality,
    }
    if _encodes_own_formats(spec):
        output_format = spec.upstream_format(request.output_format)
        fields["output_format"] = output_format.value
        if request.output_compression is not None and output_format is not OutputFormat.PNG:
            fields["output_compression"] = request.output_compression
    if settings.kind == "openai_compatible" or not _encodes_own_formats(spec):
        fields["response_format"] = "b64_json"
    for name, accepted_by, value_of in _OPTIONAL_FIELDS:
        if accepted_by(spec) and (value := value_of(request)) is not None:
            fields[name] = value
    fields.update(target.params)
    return {name: value for name, value in fields.items() if value is not None}


def _edit_files(request: NormalizedRequest, spec: ModelSpec) -> list[tuple[str, Any]]:
    # DALL·E 2 takes exactly one ``image``; GPT image models take an array as ``image[]``.
    field = "image" if spec.max_input_images == 1 else "image[]"
    files = [
        (field, _upload(f"image-{index}", image))
        for index, image in enumerate(request.images, start=1)
    ]
    if request.mask is not None:
        files.append(("mask", _upload("mask", request.mask)))
    return files


def _upload(stem: str, image: InputImage) -> tuple[str, bytes, str]:
    return f"{stem}.{image.extension}", image.data, image.mime


def _form_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return orjson.dumps(value).decode()
    return str(value)


def _raise_for_openai_error(reply: HttpReply) -> None:
    if reply.ok:
        return
    error = _error_envelope(reply.content)
    said = error.get("message")
    message = said if isinstance(said, str) and said else None
    code = error.get("code")
    if code in SAFETY_CODES:
        raise ContentPolicyViolation(
            f"{reply.provider}'s safety system rejected the request: {message or 'no reason given'}"
        )
    if code == "insufficient_quota":
        # OpenAI sends this as a 429, but waiting does not refill a billing quota.
        raise ProviderRejected(
            f"{reply.provider} says imagegate's account is out of quota (HTTP {reply.status}): "
            f"{message or 'check its plan and billing details'}",
            code="upstream_quota_exhausted",
        )
    details = ", ".join(
        f"{key} {error[key]}" for key in ("code", "param") if isinstance(error.get(key), str)
    )
    raise_for_status(reply, f"{message} ({details})" if message and details else message)


def _error_envelope(content: bytes) -> Mapping[str, object]:
    """OpenAI's ``{"error": {message, type, param, code}}``; ``{}`` for any other body."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _decoded_image(item: object, provider: str) -> bytes:
    encoded = item.get("b64_json") if isinstance(item, dict) else None
    if not isinstance(encoded, str) or not encoded:
        return b""
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderError(f"{provider} returned image data that is not valid base64") from None


def _revised_prompt(item: object) -> str | None:
    revised = item.get("revised_prompt") if isinstance(item, dict) else None
    return revised if isinstance(revised, str) and revised else None


def _answer_format(
    body: Mapping[str, Any], request: NormalizedRequest, target: Target
) -> OutputFormat:
    """The format the upstream says it used, else the one imagegate asked it for."""
    try:
        return OutputFormat(str(body.get("output_format")))
    except ValueError:
        return target.spec.upstream_format(request.output_format)


def _flattened_usage(usage: object) -> dict[str, int] | None:
    if not isinstance(usage, dict):
        return None
    flat: dict[str, int] = {}
    for name, path in _USAGE_FIELDS:
        value: object = usage
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            flat[name] = value
    return flat or None
