from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from PIL import Image
from pydantic import SecretStr
from tests.fakes.images import fake_image
from tests.fakes.openai import Upload, build_openai_fake, parse_form
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
)
from imagegate.models import (
    InputImage,
    NormalizedRequest,
    OutputFormat,
    RequestKind,
    ResponseFormat,
    Size,
)
from imagegate.providers.http import HttpReply, UpstreamClient
from imagegate.providers.openai import OpenAIProvider, build_request, parse_response
from imagegate.settings import ProviderSettings

CATALOG = Catalog.load()
KEY = "sk-test-0123456789abcdef"
PNG = fake_image(64, 64, "png")
JPEG = fake_image(48, 32, "jpeg")
MASK = fake_image(64, 64, "png", "mask")


def _target(model: str, **params: object) -> Target:
    return Target(spec=CATALOG.get(model), provider="openai", params=params)


def _settings(**fields: Any) -> ProviderSettings:
    return ProviderSettings(**{"kind": "openai", "api_key": SecretStr(KEY), **fields})


def _request(model: str, **fields: Any) -> NormalizedRequest:
    fields = {"prompt": "a red fox", "output_format": OutputFormat.PNG,
              "response_format": ResponseFormat.URL, **fields}  # fmt: skip
    return normalized_request(CATALOG.get(model), **fields)


def _image(data: bytes, mime: str) -> InputImage:
    return InputImage(data=data, mime=mime, content_hash=f"hash-{len(data)}")


def _edit(model: str, **fields: Any) -> NormalizedRequest:
    return dataclasses.replace(_request(model, **fields), kind=RequestKind.EDIT)


# --- build_request -------------------------------------------------------------------------

GENERATION_BODIES = [
    pytest.param(
        "gpt-image-1",
        {},
        {},
        {
            "model": "gpt-image-1",
            "prompt": "a red fox",
            "n": 1,
            "size": "1024x1024",
            "quality": "auto",
            "output_format": "png",
        },
        id="gpt-image-defaults-never-send-response_format",
    ),
    pytest.param(
        "gpt-image-1-mini",
        {
            "n": 3,
            "size": Size(1536, 1024),
            "quality": "high",
            "output_format": OutputFormat.JPEG,
            "output_compression": 70,
            "background": "opaque",
        },
        {},
        {
            "model": "gpt-image-1-mini",
            "prompt": "a red fox",
            "n": 3,
            "size": "1536x1024",
            "quality": "high",
            "output_format": "jpeg",
            "output_compression": 70,
            "background": "opaque",
        },
        id="gpt-image-format-compression-background",
    ),
    pytest.param(
        "gpt-image-1.5",
        {"output_format": OutputFormat.PNG, "output_compression": 50},
        {},
        {
            "model": "gpt-image-1.5",
            "prompt": "a red fox",
            "n": 1,
            "size": "1024x1024",
            "quality": "auto",
            "output_format": "png",
        },
        id="no-compression-for-png",
    ),
    pytest.param(
        "gpt-image-2",
        {"size": Size(3840, 2160), "quality": "medium", "background": "auto"},
        {},
        {
            "model": "gpt-image-2",
            "prompt": "a red fox",
            "n": 1,
            "size": "3840x2160",
            "quality": "medium",
            "output_format": "png",
            "background": "auto",
        },
        id="gpt-image-2-large-size",
    ),
    pytest.param(
        "dall-e-3",
        {"quality": "hd", "style": "natural", "output_format": OutputFormat.WEBP},
        {},
        {
            "model": "dall-e-3",
            "prompt": "a red fox",
            "n": 1,
            "size": "1024x1024",
            "quality": "hd",
            "response_format": "b64_json",
            "style": "natural",
        },
        id="dall-e-3-style-b64-no-output-format",
    ),
    pytest.param(
        "dall-e-2",
        {"size": Size(256, 256), "n": 4, "seed": 7, "negative_prompt": "blur"},
        {},
        {
            "model": "dall-e-2",
            "prompt": "a red fox",
            "n": 4,
            "size": "256x256",
            "quality": "standard",
            "response_format": "b64_json",
        },
        id="dall-e-2-b64-no-seed-or-negative-prompt",
    ),
    pytest.param(
        "gpt-image-1",
        {"quality": "low"},
        {"moderation": "low", "quality": "high"},
        {
            "model": "gpt-image-1",
            "prompt": "a red fox",
            "n": 1,
            "size": "1024x1024",
            "quality": "high",
            "output_format": "png",
            "moderation": "low",
        },
        id="route-params-merged-last",
    ),
    pytest.param(
        "dall-e-2",
        {},
        {"response_format": None, "user": "team-a"},
        {
            "model": "dall-e-2",
            "prompt": "a red fox",
            "n": 1,
            "size": "1024x1024",
            "quality": "standard",
            "user": "team-a",
        },
        id="route-param-null-removes-a-field",
    ),
]


@pytest.mark.parametrize(("model", "fields", "params", "expected"), GENERATION_BODIES)
def test_generation_body_sends_only_what_the_model_accepts(
    model: str, fields: dict[str, Any], params: dict[str, object], expected: dict[str, object]
) -> None:
    built = build_request(_request(model, **fields), _target(model, **params), _settings())
    assert built.method == "POST"
    assert str(built.url) == "https://api.openai.com/v1/images/generations"
    assert built.headers["content-type"] == "application/json"
    assert built.headers["authorization"] == f"Bearer {KEY}"
    assert orjson.loads(built.read()) == expected


@pytest.mark.parametrize(
    ("settings", "url", "authorization"),
    [
        pytest.param(
            _settings(kind="openai_compatible", api_key=None, base_url="http://localai:8080/v1/"),
            "http://localai:8080/v1/images/generations",
            None,
            id="compatible-without-key",
        ),
        pytest.param(
            _settings(kind="openai_compatible", base_url="https://gate.example/v1"),
            "https://gate.example/v1/images/generations",
            f"Bearer {KEY}",
            id="compatible-with-key",
        ),
        pytest.param(
            _settings(kind="openai_compatible", api_key=SecretStr(""), base_url="http://x/v1"),
            "http://x/v1/images/generations",
            None,
            id="compatible-with-empty-key",
        ),
    ],
)
def test_compatible_servers_use_their_base_url_and_always_get_b64_json(
    settings: ProviderSettings, url: str, authorization: str | None
) -> None:
    built = build_request(_request("gpt-image-1"), _target("gpt-image-1"), settings)
    assert str(built.url) == url
    assert built.headers.get("authorization") == authorization
    # Compatible servers (imagegate itself, LocalAI) answer with URLs unless asked otherwise.
    assert orjson.loads(built.read())["response_format"] == "b64_json"


def _sent_form(built: httpx.Request) -> tuple[dict[str, str], list[Upload]]:
    form = parse_form(built.headers["content-type"], built.read())
    return form.fields, form.files


def test_gpt_image_edit_is_multipart_with_repeated_images_and_a_mask() -> None:
    request = _edit(
        "gpt-image-1",
        images=(_image(PNG, "image/png"), _image(JPEG, "image/jpeg")),
        mask=_image(MASK, "image/png"),
        output_format=OutputFormat.WEBP,
        output_compression=60,
        background="opaque",
    )
    built = build_request(request, _target("gpt-image-1", input_fidelity="high"), _settings())

    assert str(built.url) == "https://api.openai.com/v1/images/edits"
    assert built.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert built.headers["authorization"] == f"Bearer {KEY}"
    fields, files = _sent_form(built)
    assert fields == {
        "model": "gpt-image-1",
        "prompt": "a red fox",
        "n": "1",
        "size": "1024x1024",
        "quality": "auto",
        "output_format": "webp",
        "output_compression": "60",
        "background": "opaque",
        "input_fidelity": "high",
    }
    assert files == [
        Upload("image[]", "image-1.png", "image/png", PNG),
        Upload("image[]", "image-2.jpeg", "image/jpeg", JPEG),
        Upload("mask", "mask.png", "image/png", MASK),
    ]


def test_dall_e_2_edit_sends_one_image_field_and_asks_for_b64() -> None:
    request = _edit("dall-e-2", size=Size(512, 512), images=(_image(PNG, "image/png"),))
    fields, files = _sent_form(build_request(request, _target("dall-e-2"), _settings()))
    assert fields["response_format"] == "b64_json"
    assert "output_format" not in fields
    assert files == [Upload("image", "image-1.png", "image/png", PNG)]


def test_compatible_kind_without_base_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        OpenAIProvider("local", _settings(kind="openai_compatible"), httpx.AsyncClient())


# --- parse_response ------------------------------------------------------------------------


def _reply(status: int, body: object, **headers: str) -> HttpReply:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return HttpReply(status, httpx.Headers(headers), content, "openai-main")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_decodes_images_with_the_format_the_upstream_names() -> None:
    body = {
        "created": 1,
        "data": [{"b64_json": _b64(JPEG)}, {"b64_json": _b64(PNG)}],
        "output_format": "jpeg",
    }
    request = _request("gpt-image-1", n=2, output_format=OutputFormat.JPEG)
    result = parse_response(_reply(200, body), request, _target("gpt-image-1"))
    assert [image.data for image in result.images] == [JPEG, PNG]
    assert {image.mime for image in result.images} == {"image/jpeg"}
    assert result.provider == "openai-main"
    assert result.upstream_model == "gpt-image-1"


def test_dall_e_answers_are_png_with_revised_prompt_and_table_price() -> None:
    body = {"created": 1, "data": [{"b64_json": _b64(PNG), "revised_prompt": "A red fox, oil"}]}
    request = _request(
        "dall-e-3", size=Size(1792, 1024), quality="hd", output_format=OutputFormat.WEBP
    )
    result = parse_response(_reply(200, body), request, _target("dall-e-3"))
    (image,) = result.images
    assert image.mime == "image/png"  # DALL·E makes PNG; imagegate converts to WebP later
    assert image.revised_prompt == "A red fox, oil"
    assert result.usage is None
    assert result.cost_micro_usd == 120_000


def test_usage_is_flattened_and_priced_by_tokens() -> None:
    body = {
        "created": 1,
        "data": [{"b64_json": _b64(PNG)}],
        "usage": {
            "input_tokens": 50,
            "output_tokens": 1056,
            "total_tokens": 1106,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
            "output_tokens_details": {"image_tokens": 1056, "text_tokens": 0},
        },
    }
    result = parse_response(_reply(200, body), _request("gpt-image-1"), _target("gpt-image-1"))
    assert result.usage == {
        "input_tokens": 50,
        "output_tokens": 1056,
        "total_tokens": 1106,
        "input_text_tokens": 10,
        "input_image_tokens": 40,
    }
    # $5/M text in, $10/M image in, $40/M image out
    assert result.cost_micro_usd == 50 + 400 + 42_240


def test_fewer_images_than_asked_are_returned_and_extras_dropped() -> None:
    one = {"created": 1, "data": [{"b64_json": _b64(PNG)}, {"revised_prompt": "no image"}]}
    request = _request("dall-e-2", n=3, size=Size(256, 256))
    result = parse_response(_reply(200, one), request, _target("dall-e-2"))
    assert len(result.images) == 1
    assert result.cost_micro_usd == 16_000

    three = {"created": 1, "data": [{"b64_json": _b64(PNG)}] * 3}
    request = _request("dall-e-2", n=2, size=Size(256, 256))
    assert len(parse_response(_reply(200, three), request, _target("dall-e-2")).images) == 2


def test_url_only_answer_is_refused_without_downloading() -> None:
    body = {"created": 1, "data": [{"url": "https://files.example/img.png"}]}
    with pytest.raises(ProviderRejected) as caught:
        parse_response(_reply(200, body), _request("dall-e-2"), _target("dall-e-2"))
    assert "b64_json" in caught.value.message
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"created": 1, "data": []}, id="empty-data"),
        pytest.param({"created": 1}, id="no-data"),
        pytest.param([1, 2], id="not-an-object"),
        pytest.param({"created": 1, "data": [{"b64_json": "%%%not base64"}]}, id="bad-base64"),
        pytest.param(b'{"created": 1, "data": [{"b64_json": "iVBO', id="truncated-json"),
    ],
)
def test_a_200_without_usable_images_is_retryable(body: object) -> None:
    with pytest.raises(ProviderError) as caught:
        parse_response(_reply(200, body), _request("gpt-image-1"), _target("gpt-image-1"))
    assert type(caught.value) is ProviderError
    assert caught.value.retryable is True


def _error(
    status: int,
    code: str | None,
    message: str,
    raises: type[ImagegateError],
    retryable: bool,
    says: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Any:
    """One row: OpenAI's error envelope with ``status`` -> the class imagegate raises."""
    envelope = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    row = (status, body or envelope, headers or {}, raises, retryable, says)
    return pytest.param(*row, id=code or says)


ERRORS = [
    _error(400, "invalid_size", "The size is not supported by this model.", ProviderBadRequest,
           False, "The size is not supported by this model. (code invalid_size, param size)",
           param="size"),
    _error(400, "moderation_blocked", "Your request was rejected by the safety system.",
           ContentPolicyViolation, False, "rejected by the safety system",
           type_="image_generation_user_error"),
    _error(400, "content_policy_violation",
           "Your request was rejected as a result of our safety system.",
           ContentPolicyViolation, False, "as a result of our safety system"),
    _error(401, "invalid_api_key", f"Incorrect API key provided: {KEY}.", ProviderRejected, False,
           "check its API key"),
    _error(403, "unsupported_country_region_territory", "Country, region, or territory not "
           "supported", ProviderRejected, False, "HTTP 403", type_="request_forbidden"),
    _error(404, "model_not_found", "The model `gpt-image-9` does not exist or you do not have "
           "access to it.", ProviderRejected, False, "gpt-image-9"),
    _error(429, "rate_limit_exceeded", "Rate limit reached for images per minute.",
           ProviderRateLimited, True, "Rate limit reached", type_="requests",
           headers={"retry-after": "7"}),
    # A 429 that waiting cannot fix: the account's billing quota is used up.
    _error(429, "insufficient_quota", "You exceeded your current quota.", ProviderRejected, False,
           "out of quota", type_="insufficient_quota"),
    _error(500, None, "The server had an error while processing your request.", ProviderError,
           True, "HTTP 500", type_="server_error"),
    _error(503, None, "", ProviderError, True, "HTTP 503", body=b"<html>Slow Down</html>"),
    _error(504, None, "Gateway timeout", ProviderTimeout, True, "HTTP 504", type_="server_error"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "headers", "raises", "retryable", "says"), ERRORS)
def test_error_envelopes_map_to_the_error_tree(
    status: int,
    body: object,
    headers: dict[str, str],
    raises: type[ImagegateError],
    retryable: bool,
    says: str,
) -> None:
    reply = _reply(status, body, **headers)
    with pytest.raises(ImagegateError) as caught:
        parse_response(reply, _request("gpt-image-1"), _target("gpt-image-1"))
    assert type(caught.value) is raises
    assert caught.value.retryable is retryable
    assert says in caught.value.message
    assert KEY not in caught.value.message
    if headers:
        assert caught.value.retry_after == 7.0


# --- round trips against the loopback fake ---------------------------------------------------


@pytest.fixture
def state() -> FakeState:
    return FakeState(api_key="sk-fake-live-key-0001")


@pytest.fixture
def fake(state: FakeState) -> Iterator[FakeServer]:
    with FakeServer(build_openai_fake(state)) as server:
        yield server


def _provider(
    fake: FakeServer,
    http_client: UpstreamClient,
    key: str,
    *,
    kind: str = "openai",
    timeout: float = 5.0,
) -> OpenAIProvider:
    settings = ProviderSettings(
        kind=kind,  # type: ignore[arg-type]
        api_key=SecretStr(key),
        base_url=f"{fake.base_url}/v1",
        timeout_seconds=timeout,
    )
    return OpenAIProvider("openai-fake", settings, http_client)


def _decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


async def test_gpt_image_generation_round_trip(
    fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    provider = _provider(fake, http_client, state.api_key)
    request = _request(
        "gpt-image-1", n=2, size=Size(1536, 1024), quality="low", output_format=OutputFormat.JPEG
    )
    result = await provider.generate(request, _target("gpt-image-1"))

    assert len(result.images) == 2
    for image in result.images:
        picture = _decoded(image.data)
        assert (picture.format, picture.size) == ("JPEG", (1536, 1024))
        assert image.mime == "image/jpeg"
    assert result.usage is not None
    assert result.usage["output_tokens"] == 2 * 400
    assert result.cost_micro_usd > 0
    (call,) = state.calls
    assert call.path == "/v1/images/generations"
    assert "response_format" not in orjson.loads(call.body)


async def test_dall_e_3_generation_round_trip(
    fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    provider = _provider(fake, http_client, state.api_key)
    request = _request("dall-e-3", style="vivid", output_format=OutputFormat.WEBP)
    result = await provider.generate(request, _target("dall-e-3"))

    (image,) = result.images
    picture = _decoded(image.data)
    assert (picture.format, picture.size) == ("PNG", (1024, 1024))
    assert image.revised_prompt is not None
    assert "a red fox" in image.revised_prompt
    assert result.cost_micro_usd == 40_000
    assert orjson.loads(state.calls[0].body)["response_format"] == "b64_json"


async def test_edit_with_two_images_and_a_mask_round_trip(
    fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    provider = _provider(fake, http_client, state.api_key)
    request = _edit(
        "gpt-image-1",
        images=(_image(PNG, "image/png"), _image(JPEG, "image/jpeg")),
        mask=_image(MASK, "image/png"),
        quality="low",
    )
    result = await provider.generate(request, _target("gpt-image-1"))

    (image,) = result.images
    assert _decoded(image.data).size == (1024, 1024)
    assert result.usage is not None
    assert result.usage["input_image_tokens"] > 0
    (call,) = state.calls
    assert call.path == "/v1/images/edits"
    received = parse_form(call.headers["content-type"], call.body)
    assert [(f.field, f.content_type, f.data) for f in received.files] == [
        ("image[]", "image/png", PNG),
        ("image[]", "image/jpeg", JPEG),
        ("mask", "image/png", MASK),
    ]
    assert received.fields["prompt"] == "a red fox"
    assert received.fields["model"] == "gpt-image-1"


async def test_rate_limit_carries_retry_after_and_the_next_call_succeeds(
    fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    provider = _provider(fake, http_client, state.api_key)
    state.faults.next(Fault.error(429, retry_after=3))
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.generate(_request("dall-e-2", size=Size(256, 256)), _target("dall-e-2"))
    assert caught.value.retry_after == 3.0
    assert caught.value.retryable is True

    result = await provider.generate(_request("dall-e-2", size=Size(256, 256)), _target("dall-e-2"))
    assert len(result.images) == 1


@pytest.mark.parametrize(
    ("fault", "seconds", "error"),
    [
        pytest.param(Fault.error(503), 5.0, ProviderError, id="503"),
        pytest.param(Fault.hang(), 0.3, ProviderTimeout, id="hang-past-timeout"),
        pytest.param(Fault.reset(), 5.0, ProviderError, id="connection-reset"),
        pytest.param(Fault.malformed(), 5.0, ProviderError, id="malformed-json"),
    ],
)
async def test_transient_faults_are_retryable(
    fake: FakeServer,
    http_client: UpstreamClient,
    state: FakeState,
    fault: Fault,
    seconds: float,
    error: type[ProviderError],
) -> None:
    provider = _provider(fake, http_client, state.api_key, timeout=seconds)
    state.faults.next(fault)
    with pytest.raises(ProviderError) as caught:
        await provider.generate(_request("dall-e-2", size=Size(256, 256)), _target("dall-e-2"))
    assert type(caught.value) is error
    assert caught.value.retryable is True


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-3"])
async def test_safety_refusal_is_a_content_policy_violation(
    fake: FakeServer, http_client: UpstreamClient, state: FakeState, model: str
) -> None:
    provider = _provider(fake, http_client, state.api_key)
    state.faults.next(Fault.safety())
    with pytest.raises(ContentPolicyViolation) as caught:
        await provider.generate(_request(model), _target(model))
    assert caught.value.retryable is False
    assert "safety system" in caught.value.message


async def test_wrong_key_is_rejected_and_never_echoed(
    fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    wrong = "sk-wrong-key-that-must-not-leak"
    provider = _provider(fake, http_client, wrong)
    with pytest.raises(ProviderRejected) as caught:
        await provider.generate(_request("gpt-image-1"), _target("gpt-image-1"))
    assert caught.value.retryable is False
    assert wrong not in str(caught.value)
    assert wrong not in repr(caught.value)
    assert state.calls[0].headers["authorization"] == f"Bearer {wrong}"


async def test_compatible_proxy_to_gpt_image_needs_response_format_removed(
    fake: FakeServer, http_client: UpstreamClient, state: FakeState
) -> None:
    """Compatible servers are asked for b64_json; a proxy in front of OpenAI's GPT image models
    (which refuse the field) needs ``response_format: null`` in the route's params."""
    provider = _provider(fake, http_client, state.api_key, kind="openai_compatible")
    with pytest.raises(ProviderBadRequest, match="unknown_parameter"):
        await provider.generate(_request("gpt-image-1"), _target("gpt-image-1"))

    result = await provider.generate(
        _request("gpt-image-1"), _target("gpt-image-1", response_format=None)
    )
    assert len(result.images) == 1


async def test_the_official_sdk_speaks_to_the_fake(fake: FakeServer, state: FakeState) -> None:
    sdk = openai.AsyncOpenAI(api_key=state.api_key, base_url=f"{fake.base_url}/v1", max_retries=0)
    async with sdk:
        generated = await sdk.images.generate(
            model="gpt-image-1", prompt="a red fox", size="1024x1536", output_format="webp"
        )
        edited = await sdk.images.edit(
            model="gpt-image-1",
            prompt="add a hat",
            image=[("fox.png", PNG, "image/png"), ("hat.jpeg", JPEG, "image/jpeg")],
            mask=("mask.png", MASK, "image/png"),
        )
    assert generated.data is not None
    assert generated.data[0].b64_json is not None
    picture = _decoded(base64.b64decode(generated.data[0].b64_json))
    assert (picture.format, picture.size) == ("WEBP", (1024, 1536))
    assert generated.usage is not None
    assert generated.usage.output_tokens == 1584
    assert edited.data is not None
    assert len(edited.data) == 1
    received = parse_form(state.calls[1].headers["content-type"], state.calls[1].body)
    assert [f.data for f in received.files] == [PNG, JPEG, MASK]
