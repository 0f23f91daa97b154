"""Cloudflare adapters (Workers AI REST and custom Workers): the requests they build, the
replies they read, and real round trips against the loopback fake in ``tests/fakes``."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import orjson
import pytest
from PIL import Image
from pydantic import SecretStr
from tests.fakes.cloudflare import build_cloudflare_fake
from tests.fakes.images import fake_image
from tests.fakes.server import FakeServer, FakeState, Fault
from tests.support import normalized_request

from imagegate.catalog import Catalog, ModelSpec, Target
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
from imagegate.models import InputImage, NormalizedRequest, RequestKind, Size
from imagegate.providers.cloudflare import (
    CloudflareProvider,
    CloudflareWorkerProvider,
    build_request,
    build_worker_request,
    parse_response,
    parse_worker_response,
)
from imagegate.providers.http import HttpReply, UpstreamClient
from imagegate.settings import ProviderSettings

WORKER_ENTRY = {
    "provider": "my-worker",
    "upstream_model": "flux-worker",
    "sizes": ["1024x1024", "1536x1024"],
    "default_size": "1024x1024",
    "max_n": 1,
    "max_prompt_chars": 2000,
    "qualities": ["standard"],
    "default_quality": "standard",
    "output_formats": ["png"],
    "default_output_format": "png",
    "supports_seed": True,
}
CATALOG = Catalog.load({"my-worker": WORKER_ENTRY})
SETTINGS = ProviderSettings(
    kind="cloudflare", api_key=SecretStr("cf-token"), account_id="acc-1", base_url="http://cf.test"
)
FLUX, SDXL = "flux-1-schnell", "sdxl"
PNG = fake_image(96, 64, "png")
JPEG = fake_image(96, 64, "jpeg")
WEBP = fake_image(96, 64, "webp")


def _target(model: str, params: dict[str, object] | None = None) -> Target:
    return Target(spec=CATALOG.get(model), provider="cloudflare", params=params or {})


def _request(spec: ModelSpec, **changes: Any) -> NormalizedRequest:
    return normalized_request(spec, **changes)


def _edit(spec: ModelSpec, **changes: Any) -> NormalizedRequest:
    image = InputImage(data=PNG, mime="image/png", content_hash="h")
    return _request(spec, kind=RequestKind.EDIT, images=(image,), **changes)


def _body(request: httpx.Request) -> dict[str, Any]:
    body = orjson.loads(request.read())
    assert isinstance(body, dict)
    return body


def _worker_settings(
    method: Literal["GET", "POST"], url: str = "http://worker.test/gen", key: str | None = None
) -> ProviderSettings:
    api_key = SecretStr(key) if key else None
    return ProviderSettings(kind="cloudflare_worker", base_url=url, method=method, api_key=api_key)


def _reply(
    status: int, content: object, headers: dict[str, str] | None = None, provider: str = "cf"
) -> HttpReply:
    data = content if isinstance(content, bytes) else orjson.dumps(content)
    return HttpReply(status, httpx.Headers(headers or {}), data, provider)


def _cf_error(code: int, message: str) -> dict[str, object]:
    return {"result": None, "success": False, "errors": [{"code": code, "message": message}]}


# -- build_request: Workers AI ---------------------------------------------------------------


def test_flux_body_is_prompt_steps_and_seed_only() -> None:
    target = _target(FLUX)
    built = build_request(_request(target.spec, seed=7), target, SETTINGS)

    assert built.method == "POST"
    assert str(built.url) == (
        "http://cf.test/client/v4/accounts/acc-1/ai/run/@cf/black-forest-labs/flux-1-schnell"
    )
    assert built.headers["authorization"] == "Bearer cf-token"
    assert _body(built) == {"prompt": "a lighthouse at dusk", "steps": 4, "seed": 7}


@pytest.mark.parametrize(
    ("params", "steps"),
    [({}, 4), ({"steps": 6}, 6), ({"steps": 20}, 8)],
    ids=["default", "from-params", "capped-at-8"],
)
def test_flux_steps_come_from_target_params_up_to_the_maximum(
    params: dict[str, object], steps: int
) -> None:
    target = _target(FLUX, params)
    body = _body(build_request(_request(target.spec), target, SETTINGS))
    assert body == {"prompt": "a lighthouse at dusk", "steps": steps}


def test_sdxl_body_carries_size_negative_prompt_seed_and_capped_steps() -> None:
    target = _target(SDXL, {"num_steps": 30, "guidance": 9.5})
    request = _request(target.spec, size=Size(1216, 832), seed=3, negative_prompt="fog")
    body = _body(build_request(request, target, SETTINGS))
    assert body == {
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "fog",
        "width": 1216,
        "height": 832,
        "seed": 3,
        "num_steps": 20,
        "guidance": 9.5,
    }


@pytest.mark.parametrize(("strength", "sent"), [(None, 0.35), (0.8, 0.8)])
def test_sdxl_edit_sends_the_image_as_base64_with_a_strength(
    strength: float | None, sent: float
) -> None:
    target = _target(SDXL)
    body = _body(build_request(_edit(target.spec, strength=strength), target, SETTINGS))
    assert base64.b64decode(body["image_b64"]) == PNG
    assert body["strength"] == sent


@pytest.mark.parametrize(
    ("request_changes", "param"),
    [({"negative_prompt": "fog"}, "negative_prompt"), ({"kind": RequestKind.EDIT}, "image")],
)
def test_flux_refuses_what_its_schema_does_not_take(
    request_changes: dict[str, Any], param: str
) -> None:
    target = _target(FLUX)
    with pytest.raises(UnsupportedParameter) as caught:
        build_request(_request(target.spec, **request_changes), target, SETTINGS)
    assert caught.value.param == param


def test_a_workers_ai_model_without_a_schema_row_is_rejected() -> None:
    spec = CATALOG.get(SDXL).model_copy(update={"upstream_model": "@cf/acme/painter"})
    with pytest.raises(ProviderRejected, match="@cf/acme/painter"):
        build_request(_request(spec), Target(spec=spec, provider="cloudflare"), SETTINGS)


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        (ProviderSettings(kind="cloudflare", api_key=SecretStr("t")), "account_id"),
        (ProviderSettings(kind="cloudflare", account_id="acc"), "api_key"),
    ],
)
def test_workers_ai_needs_an_account_and_a_token(settings: ProviderSettings, missing: str) -> None:
    with pytest.raises(ConfigurationError, match=missing):
        CloudflareProvider("cloudflare", settings, httpx.AsyncClient())


# -- build_request: custom Workers -----------------------------------------------------------


def test_worker_get_sends_the_prompt_in_the_query_and_keeps_the_urls_own_query() -> None:
    target = _target("my-worker")
    settings = _worker_settings("GET", url="http://worker.test/gen?token=abc")
    request = _request(target.spec, prompt="a cat & a dog? ünïcode", seed=5)
    built = build_worker_request(request, target, settings)

    assert built.method == "GET"
    assert dict(built.url.params) == {
        "token": "abc",
        "prompt": "a cat & a dog? ünïcode",
        "seed": "5",
    }
    assert built.read() == b""
    assert "authorization" not in built.headers


def test_worker_post_sends_json_with_the_size_and_a_bearer_key() -> None:
    target = _target("my-worker", {"steps": 8})
    request = _request(target.spec, size=Size(1536, 1024), seed=9)
    built = build_worker_request(request, target, _worker_settings("POST", key="w-key"))

    assert (built.method, str(built.url)) == ("POST", "http://worker.test/gen")
    assert built.headers["authorization"] == "Bearer w-key"
    assert _body(built) == {
        "prompt": "a lighthouse at dusk",
        "width": 1536,
        "height": 1024,
        "seed": 9,
        "steps": 8,
    }


def test_worker_without_a_url_is_a_configuration_error() -> None:
    settings = ProviderSettings(kind="cloudflare_worker")
    with pytest.raises(ConfigurationError, match="base_url"):
        CloudflareWorkerProvider("worker", settings, httpx.AsyncClient())


# -- parse_response --------------------------------------------------------------------------


def test_flux_envelope_is_decoded_and_priced_at_four_steps() -> None:
    target = _target(FLUX)
    envelope = {"result": {"image": base64.b64encode(JPEG).decode()}, "success": True}
    result = parse_response(_reply(200, envelope), _request(target.spec, seed=4), target)
    (image,) = result.images
    assert (image.data, image.mime, image.seed) == (JPEG, "image/jpeg", 4)
    assert result.cost_micro_usd == 652  # 4 tiles x $0.000053 + 4 steps x $0.00011


def test_sdxl_raw_png_is_the_image() -> None:
    target = _target(SDXL)
    result = parse_response(
        _reply(200, PNG, {"content-type": "image/png"}), _request(target.spec), target
    )
    (image,) = result.images
    assert (image.data, image.mime) == (PNG, "image/png")
    assert result.cost_micro_usd == 0


@pytest.mark.parametrize(
    ("content", "claimed", "mime"),
    [
        (PNG, "image/jpeg", "image/png"),
        (WEBP, "application/octet-stream", "image/webp"),
        (JPEG, "text/plain", "image/jpeg"),
    ],
)
def test_worker_image_type_is_sniffed_from_the_bytes(
    content: bytes, claimed: str, mime: str
) -> None:
    target = _target("my-worker")
    reply = _reply(200, content, {"content-type": claimed})
    (image,) = parse_worker_response(reply, _request(target.spec), target).images
    assert image.mime == mime


_HTML = b"<!DOCTYPE html><html><body>Worker threw exception</body></html>"


@pytest.mark.parametrize(
    ("model", "content", "content_type", "excerpt"),
    [
        (SDXL, orjson.dumps(_cf_error(5006, "oneOf not met")), "application/json", "oneOf"),
        (SDXL, _HTML, "text/html", "Worker threw"),
        ("my-worker", orjson.dumps({"error": "quota"}), "application/json", "quota"),
        ("my-worker", _HTML, "image/png", "Worker threw"),
        ("my-worker", b"", "image/png", "''"),
    ],
)
def test_a_body_that_is_not_an_image_is_retryable_and_quoted(
    model: str, content: bytes, content_type: str, excerpt: str
) -> None:
    target = _target(model)
    parse = parse_response if model == SDXL else parse_worker_response
    reply = _reply(200, content, {"content-type": content_type})
    with pytest.raises(ProviderError) as caught:
        parse(reply, _request(target.spec), target)
    assert type(caught.value) is ProviderError
    assert caught.value.retryable
    assert excerpt in caught.value.message


@pytest.mark.parametrize(
    "content",
    [
        PNG[: len(PNG) // 2],
        b"{not json",
        {"result": {}, "success": True},
        {"result": None, "success": False, "errors": []},
        {"result": {"image": "***"}, "success": True},
        {"result": {"image": base64.b64encode(JPEG[:-40]).decode()}, "success": True},
    ],
    ids=["truncated-png", "not-json", "no-image", "no-result", "bad-base64", "truncated-jpeg"],
)
def test_broken_success_replies_are_retryable(content: object) -> None:
    model = SDXL if content == PNG[: len(PNG) // 2] else FLUX
    target = _target(model)
    with pytest.raises(ProviderError) as caught:
        parse_response(_reply(200, content), _request(target.spec), target)
    assert type(caught.value) is ProviderError
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("status", "code", "message", "headers", "error", "retryable"),
    [
        (403, 10000, "Authentication error", {}, ProviderRejected, False),
        (403, 5016, "Model agreement required", {}, ProviderRejected, False),
        (429, 3036, "daily free allocation used", {}, ProviderRateLimited, True),
        (
            429,
            3040,
            "Capacity temporarily exceeded",
            {"retry-after": "3"},
            ProviderRateLimited,
            True,
        ),
        (400, 5007, "No such model @cf/x or task", {}, ProviderBadRequest, False),
        (
            400,
            3030,
            "AiError: Input prompt contains NSFW content.",
            {},
            ContentPolicyViolation,
            False,
        ),
        (404, 7003, "Could not route to /client/v4/x", {}, ProviderRejected, False),
        (408, 3007, "Request timeout", {}, ProviderError, True),
        (413, 3006, "Request is too large", {}, ProviderBadRequest, False),
        (500, 3043, "Internal server error", {}, ProviderError, True),
    ],
)
def test_error_envelopes_map_to_the_error_tree(
    status: int,
    code: int,
    message: str,
    headers: dict[str, str],
    error: type[ImagegateError],
    retryable: bool,
) -> None:
    for model, parse in ((FLUX, parse_response), ("my-worker", parse_worker_response)):
        target = _target(model)
        reply = _reply(status, _cf_error(code, message), headers)
        with pytest.raises(ImagegateError) as caught:
            parse(reply, _request(target.spec), target)
        assert type(caught.value) is error
        assert caught.value.retryable is retryable
        if status not in (401, 403):
            assert message in caught.value.message
        if headers:
            assert caught.value.retry_after == 3.0


# -- round trips over real sockets -----------------------------------------------------------


@pytest.fixture
def state() -> FakeState:
    return FakeState(api_key="cf-fake")


@pytest.fixture
def fake(state: FakeState) -> Iterator[FakeServer]:
    with FakeServer(build_cloudflare_fake(state)) as server:
        yield server


def _workers_ai(
    fake: FakeServer, client: UpstreamClient, key: str = "cf-fake", timeout: float = 5.0
) -> CloudflareProvider:
    settings = ProviderSettings(
        kind="cloudflare",
        api_key=SecretStr(key),
        account_id="acc-1",
        base_url=fake.base_url,
        timeout_seconds=timeout,
    )
    return CloudflareProvider("cloudflare", settings, client)


def _worker(
    fake: FakeServer, client: UpstreamClient, method: Literal["GET", "POST"], key: str
) -> CloudflareWorkerProvider:
    settings = _worker_settings(method, url=f"{fake.base_url}/worker", key=key)
    return CloudflareWorkerProvider("my-worker", settings, client)


def _decoded(data: bytes) -> tuple[str | None, tuple[int, int]]:
    image = Image.open(io.BytesIO(data))
    return image.format, image.size


async def test_flux_round_trip_makes_a_1024_jpeg(
    fake: FakeServer, state: FakeState, http_client: UpstreamClient
) -> None:
    target = _target(FLUX)
    result = await _workers_ai(fake, http_client).generate(_request(target.spec, seed=1), target)
    (image,) = result.images
    assert _decoded(image.data) == ("JPEG", (1024, 1024))
    (call,) = state.calls
    assert call.path == "/client/v4/accounts/acc-1/ai/run/@cf/black-forest-labs/flux-1-schnell"
    assert orjson.loads(call.body) == {"prompt": "a lighthouse at dusk", "steps": 4, "seed": 1}


async def test_sdxl_round_trip_makes_a_png_of_the_asked_size(
    fake: FakeServer, http_client: UpstreamClient
) -> None:
    target = _target(SDXL)
    request = _request(target.spec, size=Size(1216, 832))
    (image,) = (await _workers_ai(fake, http_client).generate(request, target)).images
    assert _decoded(image.data) == ("PNG", (1216, 832))
    assert image.mime == "image/png"


async def test_sdxl_edit_round_trip(
    fake: FakeServer, state: FakeState, http_client: UpstreamClient
) -> None:
    target = _target(SDXL)
    request = _edit(target.spec, size=Size(768, 768), strength=0.5)
    (image,) = (await _workers_ai(fake, http_client).generate(request, target)).images
    assert _decoded(image.data) == ("PNG", (768, 768))
    assert base64.b64decode(orjson.loads(state.calls[0].body)["image_b64"]) == PNG


@pytest.mark.parametrize(
    ("method", "size"), [("GET", Size(1024, 1024)), ("POST", Size(1536, 1024))]
)
async def test_worker_round_trip(
    fake: FakeServer,
    state: FakeState,
    http_client: UpstreamClient,
    method: Literal["GET", "POST"],
    size: Size,
) -> None:
    target = _target("my-worker")
    provider = _worker(fake, http_client, method, key="cf-fake")
    request = _request(target.spec, prompt="a red fox", size=size, seed=11)
    (image,) = (await provider.generate(request, target)).images
    assert _decoded(image.data) == ("PNG", (size.width, size.height))
    (call,) = state.calls
    assert call.method == method
    if method == "GET":
        assert call.query == {"prompt": "a red fox", "seed": "11"}
    else:
        assert call.headers["authorization"] == "Bearer cf-fake"


@pytest.mark.parametrize(
    ("model", "fault", "error", "retryable"),
    [
        (FLUX, Fault.error(429, retry_after=2), ProviderRateLimited, True),
        (FLUX, Fault.error(503), ProviderError, True),
        (FLUX, Fault.hang(5), ProviderTimeout, True),
        (FLUX, Fault.reset(), ProviderError, True),
        (FLUX, Fault.malformed(), ProviderError, True),
        (SDXL, Fault.malformed(), ProviderError, True),
        (FLUX, Fault.safety(), ContentPolicyViolation, False),
    ],
    ids=["429", "503", "hang", "reset", "malformed-json", "malformed-png", "safety"],
)
async def test_workers_ai_faults_become_the_right_error(
    fake: FakeServer,
    state: FakeState,
    http_client: UpstreamClient,
    model: str,
    fault: Fault,
    error: type[ImagegateError],
    retryable: bool,
) -> None:
    state.faults.next(fault)
    target = _target(model)
    with pytest.raises(ImagegateError) as caught:
        await _workers_ai(fake, http_client, timeout=0.3).generate(_request(target.spec), target)
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    if fault.retry_after is not None:
        assert caught.value.retry_after == fault.retry_after


@pytest.mark.parametrize(
    "fault", [Fault.malformed(), Fault.reset(), Fault.error(502)], ids=["malformed", "reset", "502"]
)
async def test_worker_faults_are_retryable(
    fake: FakeServer, state: FakeState, http_client: UpstreamClient, fault: Fault
) -> None:
    state.faults.next(fault)
    target = _target("my-worker")
    with pytest.raises(ProviderError) as caught:
        await _worker(fake, http_client, "GET", key="").generate(_request(target.spec), target)
    assert caught.value.retryable


@pytest.mark.parametrize("kind", ["workers-ai", "worker"])
async def test_a_wrong_key_is_rejected_without_repeating_it(
    fake: FakeServer, http_client: UpstreamClient, kind: str
) -> None:
    if kind == "workers-ai":
        target, provider = _target(FLUX), _workers_ai(fake, http_client, key="cf-wrong-1234")
    else:
        target = _target("my-worker")
        provider = _worker(fake, http_client, "POST", key="cf-wrong-1234")
    with pytest.raises(ProviderRejected) as caught:
        await provider.generate(_request(target.spec), target)
    assert not caught.value.retryable
    assert "cf-wrong-1234" not in str(caught.value)
