"""Stability AI adapter: the multipart it builds, the replies it reads, and real round trips
against the loopback fake (``tests/fakes/stability.py``)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from PIL import Image
from pydantic import SecretStr
from tests.fakes.images import fake_image
from tests.fakes.server import FakeServer, FakeState, Fault
from tests.fakes.stability import FormPart, build_stability_fake, read_multipart
from tests.support import normalized_request

from imagegate.catalog import Catalog, ModelSpec, Target, nearest_aspect_ratio
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
from imagegate.providers.http import HttpReply, UpstreamClient
from imagegate.providers.stability import StabilityProvider, build_request, parse_response
from imagegate.settings import ProviderSettings

CATALOG = Catalog.load()
STABILITY_MODELS = [spec for spec in CATALOG if spec.provider == "stability"]
SETTINGS = ProviderSettings(
    kind="stability", api_key=SecretStr("sk-test"), base_url="http://stability.test/"
)
PNG_1x1 = fake_image(64, 64, "png")


def _target(model: str, params: dict[str, object] | None = None) -> Target:
    return Target(spec=CATALOG.get(model), provider="stability", params=params or {})


def _request(spec: ModelSpec, **changes: Any) -> NormalizedRequest:
    return normalized_request(spec, **changes)


def _edit(spec: ModelSpec, **changes: Any) -> NormalizedRequest:
    image = InputImage(data=PNG_1x1, mime="image/png", content_hash="h")
    return _request(spec, kind=RequestKind.EDIT, images=(image,), **changes)


def _form(request: httpx.Request) -> dict[str, FormPart]:
    return read_multipart(request.headers["content-type"], request.read())


def _texts(request: httpx.Request) -> dict[str, str]:
    return {name: part.text for name, part in _form(request).items() if part.filename is None}


def _reply(status: int, body: object, headers: dict[str, str] | None = None) -> HttpReply:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return HttpReply(status, httpx.Headers(headers or {}), content, "stability")


# -- build_request ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "size", "path", "fields"),
    [
        ("stable-image-core", Size(1024, 1024), "core", {"aspect_ratio": "1:1"}),
        ("stable-image-ultra", Size(1792, 1024), "ultra", {"aspect_ratio": "16:9"}),
        ("sd3.5-large", Size(1536, 1024), "sd3", {"model": "sd3.5-large", "aspect_ratio": "3:2"}),
        (
            "sd3.5-large-turbo",
            Size(1024, 1536),
            "sd3",
            {"model": "sd3.5-large-turbo", "aspect_ratio": "2:3"},
        ),
        ("sd3.5-medium", Size(640, 1536), "sd3", {"model": "sd3.5-medium", "aspect_ratio": "9:21"}),
    ],
)
def test_text_to_image_is_multipart_to_the_models_endpoint(
    model: str, size: Size, path: str, fields: dict[str, str]
) -> None:
    target = _target(model)
    built = build_request(_request(target.spec, size=size), target, SETTINGS)

    assert built.method == "POST"
    assert str(built.url) == f"http://stability.test/v2beta/stable-image/generate/{path}"
    assert built.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert built.headers["authorization"] == "Bearer sk-test"
    assert built.headers["accept"] == "application/json"
    texts = _texts(built)
    assert texts == {"prompt": "a lighthouse at dusk", "output_format": "png", **fields}


def test_every_offered_size_maps_to_an_aspect_ratio_within_five_percent() -> None:
    for spec in STABILITY_MODELS:
        for size in spec.sizes:
            width, _, height = nearest_aspect_ratio(size, spec.aspect_ratios).partition(":")
            drift = abs(math.log((size.width / size.height) / (int(width) / int(height))))
            assert drift < 0.05, (spec.name, str(size))


@pytest.mark.parametrize(
    ("model", "changes", "expected", "absent"),
    [
        ("stable-image-core", {"seed": 42}, {"seed": "42"}, ()),
        ("stable-image-core", {"seed": 0}, {"seed": "0"}, ()),
        ("stable-image-core", {}, {}, ("seed", "negative_prompt", "style_preset")),
        ("stable-image-ultra", {"negative_prompt": "fog"}, {"negative_prompt": "fog"}, ()),
        ("stable-image-core", {"style": "pixel-art"}, {"style_preset": "pixel-art"}, ()),
        ("stable-image-core", {"output_format": OutputFormat.WEBP}, {"output_format": "webp"}, ()),
        # /sd3 makes png and jpeg only: webp is asked as png and converted by imagegate
        ("sd3.5-large", {"output_format": OutputFormat.WEBP}, {"output_format": "png"}, ()),
        ("sd3.5-large", {"output_format": OutputFormat.JPEG}, {"output_format": "jpeg"}, ()),
    ],
)
def test_optional_fields(
    model: str, changes: dict[str, Any], expected: dict[str, str], absent: tuple[str, ...]
) -> None:
    target = _target(model)
    texts = _texts(build_request(_request(target.spec, **changes), target, SETTINGS))
    assert expected.items() <= texts.items()
    assert not set(absent) & set(texts)


@pytest.mark.parametrize(
    ("model", "strength", "expected"),
    [
        # Ultra needs a strength with an image: the request gave none, DEFAULT_STRENGTH is sent
        ("stable-image-ultra", None, {"strength": "0.35"}),
        ("sd3.5-large", 0.6, {"strength": "0.6", "mode": "image-to-image", "model": "sd3.5-large"}),
    ],
)
def test_image_to_image_sends_the_image_and_a_strength_but_no_aspect_ratio(
    model: str, strength: float | None, expected: dict[str, str]
) -> None:
    target = _target(model)
    form = _form(build_request(_edit(target.spec, strength=strength), target, SETTINGS))

    assert form["image"].data == PNG_1x1
    assert (form["image"].filename, form["image"].content_type) == ("image.png", "image/png")
    texts = {name: part.text for name, part in form.items() if name != "image"}
    assert expected.items() <= texts.items()
    assert "aspect_ratio" not in texts
    assert ("mode" in texts) == (model != "stable-image-ultra")


def test_core_cannot_edit_and_the_catalogue_says_so() -> None:
    target = _target("stable-image-core")
    assert RequestKind.EDIT not in target.spec.kinds
    with pytest.raises(UnsupportedParameter) as caught:
        build_request(_edit(target.spec), target, SETTINGS)
    assert caught.value.param == "image"


def test_turbo_refuses_a_negative_prompt() -> None:
    target = _target("sd3.5-large-turbo")
    with pytest.raises(UnsupportedParameter) as caught:
        build_request(_request(target.spec, negative_prompt="fog"), target, SETTINGS)
    assert caught.value.param == "negative_prompt"


def test_target_params_are_merged_into_the_form_last() -> None:
    params = {"output_format": "jpeg", "cfg_scale": 4.5, "model": "sd3.5-medium"}
    target = _target("sd3.5-large", params)
    texts = _texts(build_request(_request(target.spec), target, SETTINGS))
    assert texts["output_format"] == "jpeg"
    assert texts["cfg_scale"] == "4.5"
    assert texts["model"] == "sd3.5-medium"


def test_an_upstream_model_without_an_endpoint_is_rejected() -> None:
    spec = CATALOG.get("sd3.5-large").model_copy(update={"upstream_model": "sd9"})
    target = Target(spec=spec, provider="stability")
    with pytest.raises(ProviderRejected, match="sd9"):
        build_request(_request(spec), target, SETTINGS)


def test_a_provider_without_a_key_is_a_configuration_error() -> None:
    settings = ProviderSettings(kind="stability")
    with pytest.raises(ConfigurationError, match="api_key"):
        StabilityProvider("stability", settings, httpx.AsyncClient())


# -- parse_response --------------------------------------------------------------------------


def test_success_decodes_the_image_and_keeps_its_seed_and_price() -> None:
    target = _target("stable-image-core")
    reply = _reply(
        200,
        {"image": base64.b64encode(PNG_1x1).decode(), "finish_reason": "SUCCESS", "seed": 1234},
    )
    result = parse_response(reply, _request(target.spec), target)

    (image,) = result.images
    assert (image.data, image.mime, image.seed) == (PNG_1x1, "image/png", 1234)
    assert (result.provider, result.upstream_model) == ("stability", "core")
    assert result.cost_micro_usd == 30_000


def test_an_sd3_webp_request_reads_back_the_png_it_asked_for() -> None:
    target = _target("sd3.5-medium")
    reply = _reply(200, {"image": base64.b64encode(PNG_1x1).decode(), "seed": 5})
    request = _request(target.spec, output_format=OutputFormat.WEBP)
    (image,) = parse_response(reply, request, target).images
    assert image.mime == "image/png"


def test_an_output_format_forced_by_target_params_is_the_mime_read_back() -> None:
    target = _target("stable-image-core", {"output_format": "jpeg"})
    jpeg = fake_image(64, 64, "jpeg")
    reply = _reply(200, {"image": base64.b64encode(jpeg).decode(), "seed": 5})
    (image,) = parse_response(reply, _request(target.spec), target).images
    assert image.mime == "image/jpeg"


def test_a_filtered_output_is_a_content_policy_violation_not_a_blurred_image() -> None:
    target = _target("stable-image-ultra")
    body = {"image": base64.b64encode(PNG_1x1).decode(), "finish_reason": "CONTENT_FILTERED"}
    with pytest.raises(ContentPolicyViolation) as caught:
        parse_response(_reply(200, body), _request(target.spec), target)
    assert not caught.value.retryable


def test_a_moderated_prompt_is_a_content_policy_violation_with_the_reason() -> None:
    target = _target("stable-image-core")
    body = {"id": "abc", "name": "content_moderation", "errors": ["prompt flagged: violence"]}
    with pytest.raises(ContentPolicyViolation, match="prompt flagged: violence") as caught:
        parse_response(_reply(403, body), _request(target.spec), target)
    assert not caught.value.retryable


def _envelope(status: int, name: str, *errors: str) -> tuple[int, object]:
    return status, {"id": "f00", "name": name, "errors": list(errors)}


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "retryable"),
    [
        (*_envelope(400, "bad_request", "aspect_ratio: invalid"), {}, ProviderBadRequest, False),
        (*_envelope(401, "unauthorized", "bad key"), {}, ProviderRejected, False),
        (*_envelope(403, "forbidden", "account suspended"), {}, ProviderRejected, False),
        (*_envelope(404, "not_found", "no such model"), {}, ProviderRejected, False),
        (*_envelope(413, "payload_too_large", "too big"), {}, ProviderBadRequest, False),
        (*_envelope(422, "invalid_language", "English only"), {}, ProviderBadRequest, False),
        (
            *_envelope(429, "rate_limit", "slow down"),
            {"retry-after": "7"},
            ProviderRateLimited,
            True,
        ),
        (*_envelope(500, "internal_error", "oops"), {}, ProviderError, True),
        (502, b"<html>Bad gateway</html>", {}, ProviderError, True),
        (200, b"{not json", {}, ProviderError, True),
        (200, [1, 2], {}, ProviderError, True),
        (200, {"finish_reason": "SUCCESS", "seed": 1}, {}, ProviderError, True),
        (200, {"image": "***not base64***"}, {}, ProviderError, True),
        (200, {"image": "aGk=", "finish_reason": "ERROR"}, {}, ProviderError, True),
    ],
)
def test_failures_map_to_the_error_tree(
    status: int,
    body: object,
    headers: dict[str, str],
    error: type[ImagegateError],
    retryable: bool,
) -> None:
    target = _target("stable-image-core")
    with pytest.raises(ImagegateError) as caught:
        parse_response(_reply(status, body, headers), _request(target.spec), target)
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    if status == 429:
        assert caught.value.retry_after == 7.0
    if status in (400, 422) and isinstance(body, dict):  # the provider's words say what to fix
        assert body["errors"][0] in caught.value.message


# -- round trips over real sockets -----------------------------------------------------------


@pytest.fixture
def state() -> FakeState:
    return FakeState(api_key="sk-fake")


@pytest.fixture
def fake(state: FakeState) -> Iterator[FakeServer]:
    with FakeServer(build_stability_fake(state)) as server:
        yield server


def _provider(
    fake: FakeServer, client: UpstreamClient, key: str = "sk-fake", timeout: float = 5.0
) -> StabilityProvider:
    settings = ProviderSettings(
        kind="stability", api_key=SecretStr(key), base_url=fake.base_url, timeout_seconds=timeout
    )
    return StabilityProvider("stability", settings, client)


def _decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


async def test_core_round_trip_makes_a_square_png_with_a_seed(
    fake: FakeServer, state: FakeState, http_client: UpstreamClient
) -> None:
    target = _target("stable-image-core")
    result = await _provider(fake, http_client).generate(_request(target.spec, seed=77), target)

    (image,) = result.images
    assert (_decoded(image.data).format, _decoded(image.data).size) == ("PNG", (1024, 1024))
    assert image.seed == 77
    (call,) = state.calls
    assert call.path == "/v2beta/stable-image/generate/core"


async def test_sd3_round_trip_sends_the_model_as_a_form_field(
    fake: FakeServer, state: FakeState, http_client: UpstreamClient
) -> None:
    target = _target("sd3.5-large")
    request = _request(target.spec, size=Size(1792, 1024), output_format=OutputFormat.JPEG)
    (image,) = (await _provider(fake, http_client).generate(request, target)).images

    decoded = _decoded(image.data)
    assert (decoded.format, decoded.size) == ("JPEG", (1344, 768))  # 16:9 at about 1 MP
    assert image.mime == "image/jpeg"
    (call,) = state.calls
    assert call.path == "/v2beta/stable-image/generate/sd3"
    assert read_multipart(call.headers["content-type"], call.body)["model"].text == "sd3.5-large"


async def test_ultra_round_trip_edits_the_reference_image(
    fake: FakeServer, state: FakeState, http_client: UpstreamClient
) -> None:
    target = _target("stable-image-ultra")
    source = InputImage(data=fake_image(640, 480, "png"), mime="image/png", content_hash="h")
    request = _request(target.spec, kind=RequestKind.EDIT, images=(source,))
    (image,) = (await _provider(fake, http_client).generate(request, target)).images

    assert _decoded(image.data).size == (640, 480)
    form = read_multipart(state.calls[0].headers["content-type"], state.calls[0].body)
    assert form["image"].data == source.data
    assert form["strength"].text == "0.35"


@pytest.mark.parametrize(
    ("fault", "safety", "error", "retryable"),
    [
        (Fault.error(429, retry_after=2), None, ProviderRateLimited, True),
        (Fault.error(503), None, ProviderError, True),
        (Fault.hang(5), None, ProviderTimeout, True),
        (Fault.reset(), None, ProviderError, True),
        (Fault.malformed(), None, ProviderError, True),
        (Fault.safety(), None, ContentPolicyViolation, False),
        (Fault.safety(), "filtered", ContentPolicyViolation, False),
    ],
    ids=["429", "503", "hang", "reset", "malformed", "moderated", "filtered"],
)
async def test_faults_become_the_right_error(
    fake: FakeServer,
    state: FakeState,
    http_client: UpstreamClient,
    fault: Fault,
    safety: str | None,
    error: type[ImagegateError],
    retryable: bool,
) -> None:
    state.faults.next(fault)
    if safety:
        state.extra["safety"] = safety
    target = _target("stable-image-core")
    provider = _provider(fake, http_client, timeout=0.3)
    with pytest.raises(ImagegateError) as caught:
        await provider.generate(_request(target.spec), target)
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    if fault.retry_after is not None:
        assert caught.value.retry_after == fault.retry_after


async def test_a_wrong_key_is_rejected_without_repeating_it(
    fake: FakeServer, http_client: UpstreamClient
) -> None:
    target = _target("stable-image-core")
    provider = _provider(fake, http_client, key="sk-wrong-1234")
    with pytest.raises(ProviderRejected) as caught:
        await provider.generate(_request(target.spec), target)
    assert not caught.value.retryable
    assert "sk-wrong-1234" not in str(caught.value)
    assert "sk-wrong-1234" not in repr(caught.value)
