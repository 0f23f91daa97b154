from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from PIL import Image
from pydantic import SecretStr
from tests.fakes.google import build_google_fake
from tests.fakes.images import fake_image
from tests.fakes.server import FakeServer, FakeState, Fault
from tests.support import normalized_request

from imagegate.catalog import Catalog, Target
from imagegate.errors import (
    ConfigurationError,
    ContentPolicyViolation,
    ImagegateError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    UnsupportedParameter,
)
from imagegate.models import (
    InputImage,
    NormalizedRequest,
    OutputFormat,
    RequestKind,
    Size,
)
from imagegate.providers.google import GoogleProvider, build_request, parse_response
from imagegate.providers.http import HttpReply, UpstreamClient
from imagegate.settings import ProviderSettings

CATALOG = Catalog.load()
IMAGEN = Target(CATALOG.get("imagen-4.0-generate-001"), "google")
IMAGEN_VERTEX = Target(CATALOG.get("imagen-4.0-generate-001-vertex"), "vertex")
GEMINI = Target(CATALOG.get("gemini-2.5-flash-image"), "google")

API_KEY = "AIzaSy-test-secret"
GEMINI_API = ProviderSettings(kind="google", api_key=SecretStr(API_KEY))
VERTEX = ProviderSettings(
    kind="vertex", api_key=SecretStr("ya29.token"), project="proj", location="us-central1"
)

PNG = fake_image(8, 8, "png")
JPEG = fake_image(8, 8, "jpeg")


def _request(**fields: Any) -> NormalizedRequest:
    return normalized_request(**fields)


def _reference(data: bytes, mime: str) -> InputImage:
    return InputImage(data=data, mime=mime, content_hash=str(hash(data)))


def _body(request: httpx.Request) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(request.content)
    return body


def _with(target: Target, **params: object) -> Target:
    return Target(target.spec, target.provider, params)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- build_request ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "target", "url"),
    [
        (
            GEMINI_API,
            IMAGEN,
            "https://generativelanguage.googleapis.com/v1beta/models/imagen-4.0-generate-001:predict",
        ),
        (
            GEMINI_API,
            GEMINI,
            "https://generativelanguage.googleapis.com/v1beta/models/"
            "gemini-2.5-flash-image:generateContent",
        ),
        (
            GEMINI_API.model_copy(update={"base_url": "http://127.0.0.1:9/"}),
            IMAGEN,
            "http://127.0.0.1:9/v1beta/models/imagen-4.0-generate-001:predict",
        ),
        (
            VERTEX,
            IMAGEN_VERTEX,
            "https://us-central1-aiplatform.googleapis.com/v1/projects/proj/locations/us-central1"
            "/publishers/google/models/imagen-4.0-generate-001:predict",
        ),
        (
            VERTEX.model_copy(update={"location": "global"}),
            IMAGEN_VERTEX,
            "https://aiplatform.googleapis.com/v1/projects/proj/locations/global"
            "/publishers/google/models/imagen-4.0-generate-001:predict",
        ),
        (
            VERTEX.model_copy(update={"location": "europe-west4"}),
            GEMINI,
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/proj/locations/"
            "europe-west4/publishers/google/models/gemini-2.5-flash-image:generateContent",
        ),
        (
            VERTEX.model_copy(update={"base_url": "http://127.0.0.1:9"}),
            IMAGEN_VERTEX,
            "http://127.0.0.1:9/v1/projects/proj/locations/us-central1"
            "/publishers/google/models/imagen-4.0-generate-001:predict",
        ),
    ],
)
def test_url_follows_the_provider_kind_and_the_model_family(
    settings: ProviderSettings, target: Target, url: str
) -> None:
    request = build_request(_request(), target, settings)
    assert request.method == "POST"
    assert str(request.url) == url
    assert request.headers["content-type"] == "application/json"


def test_gemini_api_sends_the_key_in_a_header_never_in_the_url() -> None:
    request = build_request(_request(), IMAGEN, GEMINI_API)
    assert request.headers["x-goog-api-key"] == API_KEY
    assert "authorization" not in request.headers
    assert API_KEY not in str(request.url)


def test_vertex_sends_a_bearer_token() -> None:
    request = build_request(_request(), IMAGEN_VERTEX, VERTEX)
    assert request.headers["authorization"] == "Bearer ya29.token"
    assert "x-goog-api-key" not in request.headers


@pytest.mark.parametrize(
    ("target", "size", "ratio"),
    [
        (IMAGEN, Size(1024, 1024), "1:1"),
        (IMAGEN, Size(1536, 1024), "4:3"),
        (IMAGEN, Size(1024, 1536), "3:4"),
        (IMAGEN, Size(1792, 1024), "16:9"),
        (IMAGEN, Size(1024, 1792), "9:16"),
        (IMAGEN, Size(896, 1280), "3:4"),
        (GEMINI, Size(1024, 1024), "1:1"),
        (GEMINI, Size(1536, 1024), "3:2"),
        (GEMINI, Size(1024, 1536), "2:3"),
        (GEMINI, Size(1792, 1024), "16:9"),
        (GEMINI, Size(1536, 672), "21:9"),
    ],
)
def test_size_becomes_the_nearest_supported_aspect_ratio(
    target: Target, size: Size, ratio: str
) -> None:
    body = _body(build_request(_request(size=size), target, GEMINI_API))
    if target is IMAGEN:
        assert body["parameters"]["aspectRatio"] == ratio
    else:
        assert body["generationConfig"]["imageConfig"]["aspectRatio"] == ratio


@pytest.mark.parametrize(
    ("output_format", "compression", "options"),
    [
        (OutputFormat.PNG, None, {"mimeType": "image/png"}),
        (OutputFormat.JPEG, 70, {"mimeType": "image/jpeg", "compressionQuality": 70}),
        (OutputFormat.JPEG, None, {"mimeType": "image/jpeg"}),
        (OutputFormat.WEBP, 80, {"mimeType": "image/png"}),  # converted afterwards
    ],
)
def test_imagen_body_asks_for_n_images_in_a_native_format(
    output_format: OutputFormat, compression: int | None, options: dict[str, object]
) -> None:
    request = _request(n=3, output_format=output_format, output_compression=compression)
    body = _body(build_request(request, IMAGEN, GEMINI_API))
    assert body["instances"] == [{"prompt": "a lighthouse at dusk"}]
    assert body["parameters"]["sampleCount"] == 3
    assert body["parameters"]["outputOptions"] == options
    assert body["parameters"]["includeRaiReason"] is True


@pytest.mark.parametrize("target", [IMAGEN, IMAGEN_VERTEX], ids=["gemini-entry", "vertex-entry"])
def test_gemini_api_never_gets_vertex_only_parameters(target: Target) -> None:
    routed = _with(target, addWatermark=False, enhancePrompt=True, personGeneration="dont_allow")
    request = _request(seed=7, negative_prompt="blurry")
    parameters = _body(build_request(request, routed, GEMINI_API))["parameters"]
    for rejected in ("seed", "negativePrompt", "addWatermark", "enhancePrompt"):
        assert rejected not in parameters
    assert parameters["personGeneration"] == "dont_allow"


def test_vertex_sends_seed_without_watermark_and_the_negative_prompt() -> None:
    request = _request(seed=7, negative_prompt="blurry")
    parameters = _body(build_request(request, IMAGEN_VERTEX, VERTEX))["parameters"]
    assert parameters["seed"] == 7
    assert parameters["addWatermark"] is False
    assert parameters["negativePrompt"] == "blurry"


def test_vertex_drops_the_seed_when_a_route_keeps_the_watermark() -> None:
    routed = _with(IMAGEN_VERTEX, addWatermark=True)
    parameters = _body(build_request(_request(seed=7), routed, VERTEX))["parameters"]
    assert parameters["addWatermark"] is True
    assert "seed" not in parameters


def test_no_seed_or_watermark_setting_when_none_was_asked() -> None:
    parameters = _body(build_request(_request(), IMAGEN_VERTEX, VERTEX))["parameters"]
    assert "seed" not in parameters
    assert "addWatermark" not in parameters
    assert "negativePrompt" not in parameters


def test_route_params_override_last_and_merge_nested_objects() -> None:
    routed = _with(
        IMAGEN,
        personGeneration="allow_adult",
        aspectRatio="16:9",
        outputOptions={"compressionQuality": 40},
    )
    request = _request(output_format=OutputFormat.JPEG, output_compression=90)
    parameters = _body(build_request(request, routed, GEMINI_API))["parameters"]
    assert parameters["personGeneration"] == "allow_adult"
    assert parameters["aspectRatio"] == "16:9"
    assert parameters["outputOptions"] == {"mimeType": "image/jpeg", "compressionQuality": 40}


def test_gemini_body_sends_reference_images_as_inline_data_parts() -> None:
    request = _request(
        kind=RequestKind.EDIT,
        prompt="put the cat on the sofa",
        images=(_reference(PNG, "image/png"), _reference(JPEG, "image/jpeg")),
    )
    body = _body(build_request(request, GEMINI, GEMINI_API))
    (content,) = body["contents"]
    assert content["role"] == "user"
    assert content["parts"] == [
        {"text": "put the cat on the sofa"},
        {"inlineData": {"mimeType": "image/png", "data": _b64(PNG)}},
        {"inlineData": {"mimeType": "image/jpeg", "data": _b64(JPEG)}},
    ]
    assert body["generationConfig"]["responseModalities"] == ["TEXT", "IMAGE"]


def test_imagen_refuses_reference_images() -> None:
    request = _request(kind=RequestKind.EDIT, images=(_reference(PNG, "image/png"),))
    with pytest.raises(UnsupportedParameter):
        build_request(request, IMAGEN, GEMINI_API)


def test_a_model_outside_the_known_families_is_rejected_not_guessed() -> None:
    spec = IMAGEN.spec.model_copy(update={"upstream_model": "veo-3.0-generate-001"})
    with pytest.raises(ProviderRejected, match=r"veo-3\.0-generate-001"):
        build_request(_request(), Target(spec, "google"), GEMINI_API)


# --- parse_response -----------------------------------------------------------------------------


def _reply(status: int, body: object, headers: dict[str, str] | None = None) -> HttpReply:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return HttpReply(status, httpx.Headers(headers or {}), content, "google")


def _parse_error(reply: HttpReply, target: Target = IMAGEN) -> ImagegateError:
    with pytest.raises(ImagegateError) as caught:
        parse_response(reply, _request(), target)
    return caught.value


def test_imagen_predictions_become_images_priced_from_the_table() -> None:
    body = {
        "predictions": [
            {"bytesBase64Encoded": _b64(PNG), "mimeType": "image/png"},
            {"bytes_base64_encoded": _b64(JPEG), "mime_type": "image/jpeg"},
        ]
    }
    result = parse_response(_reply(200, body), _request(n=2), IMAGEN)
    assert [(i.data, i.mime) for i in result.images] == [(PNG, "image/png"), (JPEG, "image/jpeg")]
    assert result.provider == "google"
    assert result.upstream_model == "imagen-4.0-generate-001"
    assert result.cost_micro_usd == 2 * 40_000
    assert result.usage is None


def test_imagen_filtered_entries_are_dropped_and_not_billed() -> None:
    body = {
        "predictions": [
            {"bytesBase64Encoded": _b64(PNG), "mimeType": "image/png"},
            {"raiFilteredReason": "filtered: people"},
        ]
    }
    result = parse_response(_reply(200, body), _request(n=2), IMAGEN)
    assert [i.data for i in result.images] == [PNG]
    assert result.cost_micro_usd == 40_000


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"predictions": [{"raiFilteredReason": "Support codes: 58061214"}]}, "58061214"),
        ({}, "filtered"),
        ({"predictions": []}, "filtered"),
    ],
)
def test_imagen_with_every_image_filtered_is_a_content_policy_violation(
    body: dict[str, object], reason: str
) -> None:
    error = _parse_error(_reply(200, body))
    assert type(error) is ContentPolicyViolation
    assert reason in error.message
    assert not error.retryable


def _gemini_answer(parts: list[dict[str, object]], finish: str = "STOP") -> dict[str, object]:
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish}],
        "usageMetadata": {
            "promptTokenCount": 270,
            "candidatesTokenCount": 1300,
            "totalTokenCount": 1570,
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": 12},
                {"modality": "IMAGE", "tokenCount": 258},
            ],
            "candidatesTokensDetails": [
                {"modality": "TEXT", "tokenCount": 10},
                {"modality": "IMAGE", "tokenCount": 1290},
            ],
        },
    }


@pytest.mark.parametrize("key", ["inlineData", "inline_data"])
def test_gemini_inline_image_with_usage_and_token_cost(key: str) -> None:
    answer = _gemini_answer(
        [{"text": "Here you go."}, {key: {"mimeType": "image/png", "data": _b64(PNG)}}]
    )
    result = parse_response(_reply(200, answer), _request(), GEMINI)
    assert [(i.data, i.mime) for i in result.images] == [(PNG, "image/png")]
    assert result.images[0].revised_prompt is None  # text parts are commentary
    assert result.usage is not None
    assert result.usage["input_tokens"] == 270
    assert result.usage["output_tokens"] == 1290
    assert result.usage["total_tokens"] == 1570
    # $0.30 per 1M on 270 input tokens + $30 per 1M on 1290 image tokens
    assert result.cost_micro_usd == round((270 * 300_000 + 1290 * 30_000_000) / 1_000_000)


@pytest.mark.parametrize(
    "answer",
    [
        {"promptFeedback": {"blockReason": "SAFETY"}},
        {"prompt_feedback": {"block_reason": "PROHIBITED_CONTENT"}},
        _gemini_answer([], finish="IMAGE_SAFETY"),
        _gemini_answer([{"text": "I can't make that."}], finish="PROHIBITED_CONTENT"),
    ],
    ids=["block-reason", "snake-case-block", "image-safety", "prohibited-with-text"],
)
def test_gemini_safety_block_on_http_200_is_a_content_policy_violation(
    answer: dict[str, object],
) -> None:
    error = _parse_error(_reply(200, answer), GEMINI)
    assert type(error) is ContentPolicyViolation


@pytest.mark.parametrize(
    "answer",
    [
        _gemini_answer([{"text": "Sure! Imagine a lighthouse..."}]),
        _gemini_answer([], finish="NO_IMAGE"),
        {},
    ],
    ids=["text-only", "no-image", "empty"],
)
def test_gemini_answer_without_image_or_block_is_retryable(answer: dict[str, object]) -> None:
    error = _parse_error(_reply(200, answer), GEMINI)
    assert type(error) is ProviderError
    assert error.retryable
    assert "returned no image" in error.message


def _envelope(
    code: int, status: str, message: str, *details: dict[str, object]
) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "41s"}
KEY_INVALID = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "API_KEY_INVALID",
    "domain": "googleapis.com",
    "metadata": {"service": "generativelanguage.googleapis.com", "key": API_KEY},
}


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "code", "retry_after"),
    [
        (
            400,
            _envelope(400, "INVALID_ARGUMENT", f"API key not valid: {API_KEY}", KEY_INVALID),
            {},
            ProviderRejected,
            "upstream_auth_failed",
            None,
        ),
        (
            401,
            _envelope(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
            {},
            ProviderRejected,
            "upstream_auth_failed",
            None,
        ),
        (
            403,
            _envelope(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."),
            {},
            ProviderRejected,
            "upstream_auth_failed",
            None,
        ),
        (
            404,
            _envelope(404, "NOT_FOUND", "models/imagen-4.0-generate-001 is not found"),
            {},
            ProviderRejected,
            "upstream_model_not_found",
            None,
        ),
        (
            429,
            _envelope(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", RETRY_INFO),
            {},
            ProviderRateLimited,
            "upstream_rate_limited",
            41.0,
        ),
        (
            429,
            _envelope(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", RETRY_INFO),
            {"retry-after": "7"},
            ProviderRateLimited,
            "upstream_rate_limited",
            7.0,
        ),
        (
            429,
            _envelope(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted"),
            {},
            ProviderRateLimited,
            "upstream_rate_limited",
            None,
        ),
        (
            400,
            _envelope(
                400,
                "INVALID_ARGUMENT",
                "Image generation failed with the following error: The prompt could not be "
                "submitted. This prompt contains words that violate Vertex AI's usage "
                "guidelines and Responsible AI practices. Support codes: 42876398",
            ),
            {},
            ContentPolicyViolation,
            "content_policy_violation",
            None,
        ),
        (
            400,
            _envelope(400, "INVALID_ARGUMENT", "Unsupported aspect ratio '3:2'."),
            {},
            ProviderBadRequest,
            "upstream_invalid_request",
            None,
        ),
        (
            500,
            _envelope(500, "INTERNAL", "An internal error has occurred."),
            {},
            ProviderError,
            "upstream_error",
            None,
        ),
        (
            503,
            _envelope(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
            {},
            ProviderError,
            "upstream_error",
            None,
        ),
        (502, b"<html>Bad Gateway</html>", {}, ProviderError, "upstream_error", None),
    ],
    ids=[
        "api-key-invalid",
        "unauthenticated",
        "permission-denied",
        "not-found",
        "retry-info",
        "retry-after-header-wins",
        "rate-limited-no-hint",
        "responsible-ai",
        "invalid-argument",
        "internal",
        "overloaded",
        "html-from-a-proxy",
    ],
)
def test_google_error_envelope_maps_to_the_error_tree(
    status: int,
    body: object,
    headers: dict[str, str],
    expected: type[ImagegateError],
    code: str,
    retry_after: float | None,
) -> None:
    error = _parse_error(_reply(status, body, headers))
    assert type(error) is expected
    assert error.code == code
    assert error.retry_after == retry_after
    assert API_KEY not in error.message


def test_an_expired_key_is_an_auth_failure_too() -> None:
    expired = {**KEY_INVALID, "reason": "API_KEY_EXPIRED"}
    body = _envelope(400, "INVALID_ARGUMENT", "API key expired. Please renew the API key.", expired)
    error = _parse_error(_reply(400, body))
    assert (type(error), error.code) == (ProviderRejected, "upstream_auth_failed")


def test_provider_words_explain_a_bad_request() -> None:
    body = _envelope(400, "INVALID_ARGUMENT", "Unsupported aspect ratio '3:2'.")
    assert "Unsupported aspect ratio" in _parse_error(_reply(400, body)).message


@pytest.mark.parametrize(
    "content",
    [
        b'{"predictions": [{"bytesBase64Encoded": "iVBOR',
        b"[1, 2]",
        orjson.dumps({"predictions": [{"bytesBase64Encoded": "not base64!"}]}),
    ],
    ids=["truncated", "not-an-object", "bad-base64"],
)
def test_a_garbled_success_is_retryable(content: bytes) -> None:
    error = _parse_error(_reply(200, content))
    assert type(error) is ProviderError
    assert error.retryable


async def test_vertex_settings_need_a_project_and_a_token(http_client: UpstreamClient) -> None:
    with pytest.raises(ConfigurationError, match="project"):
        GoogleProvider("vertex", VERTEX.model_copy(update={"project": None}), http_client)
    with pytest.raises(ConfigurationError, match="api_key"):
        GoogleProvider("google", GEMINI_API.model_copy(update={"api_key": None}), http_client)


# --- Round trips against the loopback fake ------------------------------------------------------


@pytest.fixture
def state() -> FakeState:
    return FakeState(api_key="fake-secret-key")


@pytest.fixture
def fake(state: FakeState) -> Iterator[FakeServer]:
    with FakeServer(build_google_fake(state)) as server:
        yield server


def _provider(
    kind: str, fake: FakeServer, http_client: UpstreamClient, key: str, timeout: float = 10.0
) -> GoogleProvider:
    settings = ProviderSettings(
        kind=kind,  # type: ignore[arg-type]
        api_key=SecretStr(key),
        base_url=fake.base_url,
        project="proj" if kind == "vertex" else None,
        location="europe-west4",
        timeout_seconds=timeout,
    )
    return GoogleProvider(kind, settings, http_client)


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(("kind", "target"), [("google", IMAGEN), ("vertex", IMAGEN_VERTEX)])
async def test_imagen_generates_n_images_at_the_asked_aspect(
    kind: str, target: Target, fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    provider = _provider(kind, fake, http_client, state.api_key)
    # A seed and a negative prompt are honoured on Vertex and left out on the Gemini API (which
    # would answer 400 to them); the fake refuses them exactly so.
    request = _request(n=2, size=Size(1792, 1024), seed=42, negative_prompt="text, watermark")
    result = await provider.generate(request, target)
    assert len(result.images) == 2
    for image in result.images:
        decoded = _decoded(image.data)
        assert decoded.format == "PNG"
        assert decoded.size == (1408, 768)  # Imagen's 16:9
    assert result.images[0].data != result.images[1].data
    assert result.provider == kind
    assert result.cost_micro_usd == 2 * 40_000
    (call,) = state.calls
    assert call.path.endswith("/models/imagen-4.0-generate-001:predict")
    assert ("/locations/europe-west4/" in call.path) is (kind == "vertex")


async def test_imagen_returns_jpeg_when_asked(
    fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    provider = _provider("google", fake, http_client, state.api_key)
    request = _request(size=Size(896, 1280), output_format=OutputFormat.JPEG, output_compression=60)
    (image,) = (await provider.generate(request, IMAGEN)).images
    decoded = _decoded(image.data)
    assert (decoded.format, decoded.size, image.mime) == ("JPEG", (896, 1280), "image/jpeg")


async def test_gemini_generates_one_image_with_token_cost(
    fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    provider = _provider("google", fake, http_client, state.api_key)
    result = await provider.generate(_request(size=Size(1792, 1024)), GEMINI)
    (image,) = result.images
    assert _decoded(image.data).size == (1344, 768)  # Gemini's 16:9
    assert result.usage is not None
    assert result.usage["output_tokens"] == 1290
    assert result.cost_micro_usd > 1290 * 30  # image tokens at $30 per 1M, plus the prompt
    (call,) = state.calls
    assert call.path.endswith("/models/gemini-2.5-flash-image:generateContent")


@pytest.mark.parametrize("kind", ["google", "vertex"])
async def test_gemini_edit_sends_every_reference_image(
    kind: str, fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    provider = _provider(kind, fake, http_client, state.api_key)
    references = (_reference(PNG, "image/png"), _reference(JPEG, "image/jpeg"))
    request = _request(kind=RequestKind.EDIT, prompt="combine these", images=references)
    (image,) = (await provider.generate(request, GEMINI)).images
    assert _decoded(image.data).format == "PNG"
    (call,) = state.calls
    parts = orjson.loads(call.body)["contents"][0]["parts"]
    sent = [base64.b64decode(p["inlineData"]["data"]) for p in parts if "inlineData" in p]
    assert sent == [PNG, JPEG]


async def test_a_text_only_answer_is_retryable(
    fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    text_only = _with(GEMINI, generationConfig={"responseModalities": ["TEXT"]})
    with pytest.raises(ProviderError, match="returned no image") as caught:
        await _provider("google", fake, http_client, state.api_key).generate(_request(), text_only)
    assert caught.value.retryable
    sent = orjson.loads(state.calls[0].body)["generationConfig"]
    assert sent["imageConfig"] == {"aspectRatio": "1:1"}  # the route's params merged, not replaced


@pytest.mark.parametrize("target", [IMAGEN, GEMINI], ids=["imagen", "gemini"])
async def test_rate_limit_carries_googles_retry_delay(
    target: Target, fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    state.faults.next(Fault.error(429, retry_after=41))
    with pytest.raises(ProviderRateLimited) as caught:
        await _provider("google", fake, http_client, state.api_key).generate(_request(), target)
    assert caught.value.retry_after == 41
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.error(503), ProviderError),
        (Fault.error(500), ProviderError),
        (Fault.reset(), ProviderError),
        (Fault.malformed(), ProviderError),
        (Fault.hang(3.0), ProviderTimeout),
    ],
    ids=["overloaded", "internal", "reset", "malformed", "hang"],
)
async def test_transient_failures_are_retryable(
    fault: Fault,
    expected: type[ProviderError],
    fake: FakeServer,
    http_client: UpstreamClient,
    state: FakeState,
) -> None:
    state.faults.next(fault)
    provider = _provider("vertex", fake, http_client, state.api_key, timeout=0.3)
    with pytest.raises(ProviderError) as caught:
        await provider.generate(_request(), IMAGEN_VERTEX)
    assert type(caught.value) is expected
    assert caught.value.retryable


async def test_the_fault_is_gone_on_the_next_call(
    fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    state.faults.next(Fault.error(503))
    provider = _provider("google", fake, http_client, state.api_key)
    with pytest.raises(ProviderError, match="overloaded"):
        await provider.generate(_request(), GEMINI)
    assert len((await provider.generate(_request(), GEMINI)).images) == 1


@pytest.mark.parametrize("target", [IMAGEN, GEMINI], ids=["imagen", "gemini"])
async def test_safety_refusal_is_a_content_policy_violation(
    target: Target, fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    state.faults.next(Fault.safety())
    with pytest.raises(ContentPolicyViolation) as caught:
        await _provider("google", fake, http_client, state.api_key).generate(_request(n=1), target)
    assert not caught.value.retryable


@pytest.mark.parametrize("kind", ["google", "vertex"])
async def test_wrong_credentials_are_rejected_without_echoing_them(
    kind: str, fake: FakeServer, http_client: UpstreamClient
) -> None:
    wrong = "AIzaSy-wrong-key-0123"
    target = IMAGEN if kind == "google" else IMAGEN_VERTEX
    with pytest.raises(ProviderRejected) as caught:
        await _provider(kind, fake, http_client, wrong).generate(_request(), target)
    assert caught.value.code == "upstream_auth_failed"
    assert not caught.value.retryable
    assert caught.value.fallback  # the next target of the route may still serve it
    assert wrong not in caught.value.message


async def test_a_retired_model_is_rejected_so_the_route_falls_back(
    fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    spec = IMAGEN.spec.model_copy(update={"upstream_model": "imagen-3.0-generate-002"})
    with pytest.raises(ProviderRejected) as caught:
        await _provider("google", fake, http_client, state.api_key).generate(
            _request(), Target(spec, "google")
        )
    assert caught.value.code == "upstream_model_not_found"
    assert caught.value.fallback
