"""Google image models: Imagen (``:predict``) and Gemini native image (``:generateContent``).

One adapter serves two provider kinds that differ only in URL and credentials:

- ``google``: the Gemini API (``generativelanguage.googleapis.com``) with an API key;
- ``vertex``: Vertex AI (``{location}-aiplatform.googleapis.com``) with an OAuth access token.

Which request style a model speaks comes from its catalogue entry's ``upstream_model`` family
(``_STYLE_BY_MODEL_FAMILY``), not from the provider kind: both APIs host both families.

Lifecycle warning: Imagen on the Gemini API is being shut down (Google announced 2026-08-17,
and Vertex asks customers to move ``imagen-4.0-*`` to ``gemini-2.5-flash-image``). Expect a 404
(``ProviderRejected``, which falls through to the next target) from ``google`` Imagen targets, and
give every Imagen route a fallback to a Gemini image model.

Safety refusals come three ways and all become ``ContentPolicyViolation``: a 400 whose message
cites Responsible AI practices, Imagen predictions that carry only ``raiFilteredReason``, and a
Gemini HTTP 200 with a block reason and no image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson

from imagegate.catalog import Target
from imagegate.errors import (
    ConfigurationError,
    ContentPolicyViolation,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    UnsupportedParameter,
)
from imagegate.models import NormalizedRequest, ProviderResult, RawImage
from imagegate.providers.google_wire import (
    Json,
    field,
    gemini_body,
    gemini_images,
    imagen_body,
    imagen_images,
)
from imagegate.providers.http import (
    MAX_RETRY_AFTER_SECONDS,
    HttpProvider,
    HttpReply,
    UpstreamClient,
    raise_for_status,
    retry_after_seconds,
    upstream_url,
)
from imagegate.settings import ProviderSettings

GEMINI_API_BASE = "https://generativelanguage.googleapis.com"


def build_request(
    request: NormalizedRequest, target: Target, settings: ProviderSettings
) -> httpx.Request:
    """The HTTP request for one call: URL and credentials by provider kind, body by model."""
    style = _style_for(target)
    if request.images and not style.takes_reference_images:
        raise UnsupportedParameter(
            f"Model {target.spec.name!r} does not take reference images.", param="image"
        )
    body = style.build_body(request, target, settings.kind == "vertex")
    return httpx.Request(
        "POST",
        upstream_url(_model_url(settings, target.spec.upstream_model, style.method)),
        headers={"content-type": "application/json", **_auth_headers(settings)},
        content=orjson.dumps(body),
    )


def parse_response(reply: HttpReply, request: NormalizedRequest, target: Target) -> ProviderResult:
    """Images, usage and cost from a reply; every failure becomes its ``imagegate.errors`` class."""
    _raise_for_google_error(reply)
    body = reply.json()
    if not isinstance(body, dict):
        raise ProviderError(
            f"{reply.provider} returned a JSON {type(body).__name__}, not an object"
        )
    images, usage = _style_for(target).parse_body(body, request, reply.provider)
    images = images[: request.n]  # the contract is exactly n; extras would be billed as more
    return ProviderResult(
        provider=reply.provider,
        upstream_model=target.spec.upstream_model,
        images=tuple(images),
        cost_micro_usd=target.spec.cost_micro_usd(
            request.quality, request.size, len(images), usage
        ),
        usage=usage,
    )


class GoogleProvider(HttpProvider):
    """A configured ``google`` (Gemini API) or ``vertex`` (Vertex AI) provider instance."""

    def __init__(self, name: str, settings: ProviderSettings, client: UpstreamClient) -> None:
        if settings.kind not in ("google", "vertex"):
            raise ConfigurationError(
                f"provider {name!r}: GoogleProvider cannot serve {settings.kind!r}"
            )
        if settings.api_key is None or not settings.api_key.get_secret_value():
            what = "an access token" if settings.kind == "vertex" else "an API key"
            raise ConfigurationError(f"provider {name!r} needs {what} in api_key", param="api_key")
        if settings.kind == "vertex" and not settings.project:
            raise ConfigurationError(f"provider {name!r} (vertex) needs a project", param="project")
        super().__init__(name, settings, client, build_request, parse_response)


# --- Where and how: the only place that branches on the provider kind ---------------------------


def _model_url(settings: ProviderSettings, model: str, method: str) -> str:
    if settings.kind == "vertex":
        location = settings.location
        # Regional endpoints are "{location}-aiplatform"; the global one has no prefix.
        host = "aiplatform.googleapis.com"
        if location != "global":
            host = f"{location}-{host}"
        base = (settings.base_url or f"https://{host}").rstrip("/")
        return (
            f"{base}/v1/projects/{settings.project}/locations/{location}"
            f"/publishers/google/models/{model}:{method}"
        )
    base = (settings.base_url or GEMINI_API_BASE).rstrip("/")
    return f"{base}/v1beta/models/{model}:{method}"


def _auth_headers(settings: ProviderSettings) -> dict[str, str]:
    secret = settings.api_key.get_secret_value() if settings.api_key else ""
    if settings.kind == "vertex":
        return {"authorization": f"Bearer {secret}"}
    return {"x-goog-api-key": secret}


# --- The style table: which wire a model speaks -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _WireStyle:
    method: str
    build_body: Callable[[NormalizedRequest, Target, bool], Json]
    parse_body: Callable[
        [Json, NormalizedRequest, str], tuple[list[RawImage], dict[str, int] | None]
    ]
    takes_reference_images: bool


_STYLE_BY_MODEL_FAMILY: dict[str, _WireStyle] = {
    "imagen-": _WireStyle("predict", imagen_body, imagen_images, takes_reference_images=False),
    "gemini-": _WireStyle("generateContent", gemini_body, gemini_images, True),
}
"""Keyed by the prefix of the catalogue's ``upstream_model``: a new Google model family is one
row here plus its catalogue entries."""


def _style_for(target: Target) -> _WireStyle:
    model = target.spec.upstream_model
    for family, style in _STYLE_BY_MODEL_FAMILY.items():
        if model.startswith(family):
            return style
    raise ProviderRejected(
        f"{target.provider}: no Google request style for upstream model {model!r}; the Google "
        f"adapter serves {', '.join(f + '*' for f in _STYLE_BY_MODEL_FAMILY)}",
        code="upstream_model_not_found",
    )


# --- Errors ------------------------------------------------------------------------------------


def _raise_for_google_error(reply: HttpReply) -> None:
    """Google's envelope ``{"error": {code, message, status, details}}`` to the error tree."""
    if reply.ok:
        return
    try:
        body = reply.json()
    except ProviderError:
        body = None  # an HTML page from a proxy: classify by status alone
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or "")[:500] or None
    details = [d for d in error.get("details") or () if isinstance(d, dict)]
    reasons = [str(d.get("reason") or "") for d in details]
    # API_KEY_INVALID and its kin (API_KEY_EXPIRED...) blame the key, not the request.
    key_problem = next((r for r in reasons if r.startswith("API_KEY_")), None)
    if key_problem:
        # Google answers a bad key with 400; the message is dropped (it may echo the key).
        raise ProviderRejected(
            f"{reply.provider} refused imagegate's credentials ({key_problem}); check its API key",
            code="upstream_auth_failed",
        )
    if reply.status == 429:
        retry_after = retry_after_seconds(reply.headers)
        raise ProviderRateLimited(
            f"{reply.provider} is rate limiting imagegate (HTTP 429)"
            + (f": {message}" if message else ""),
            retry_after=retry_after if retry_after is not None else _retry_delay(details),
        )
    if reply.status == 400 and message and "responsible ai" in message.lower():
        raise ContentPolicyViolation(
            f"{reply.provider} refused the prompt: {message}", param="prompt"
        )
    raise_for_status(reply, message)


def _retry_delay(details: list[Json]) -> float | None:
    """``google.rpc.RetryInfo``'s ``retryDelay`` ("41s", "0.5s") in seconds, capped."""
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = str(field(detail, "retryDelay", "retry_delay") or "")
            try:
                return min(max(float(delay.removesuffix("s")), 0.0), MAX_RETRY_AFTER_SECONDS)
            except ValueError:
                return None
    return None
