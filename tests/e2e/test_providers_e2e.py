"""The official ``openai`` SDK, unchanged, through a real ``imagegate serve`` process to every
provider kind, each played by its loopback fake speaking the provider's own wire protocol."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest
from PIL import Image
from tests.fakes.cloudflare import build_cloudflare_fake
from tests.fakes.google import build_google_fake
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault
from tests.fakes.stability import build_stability_fake
from tests.support import DataDir
from tests.support.processes import ServerProcess, environment, run_cli

pytestmark = pytest.mark.e2e

WORKER_MODEL = {
    "provider": "worker",
    "upstream_model": "my-worker",
    "sizes": ["1024x1024"],
    "default_size": "1024x1024",
    "max_n": 2,
    "max_n_per_call": 1,
    "max_prompt_chars": 2000,
    "qualities": ["auto"],
    "default_quality": "auto",
    "output_formats": ["png", "jpeg", "webp"],
    "default_output_format": "png",
}


@dataclass
class Deployment:
    client: openai.OpenAI
    data: DataDir
    fakes: dict[str, FakeState]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("providers")
    states = {name: FakeState() for name in ("openai", "google", "stability", "cloudflare")}
    builders = {
        "openai": build_openai_fake,
        "google": build_google_fake,
        "stability": build_stability_fake,
        "cloudflare": build_cloudflare_fake,
    }
    servers = {name: FakeServer(builders[name](states[name])).start() for name in states}
    url = {name: server.base_url for name, server in servers.items()}
    config = {
        "providers": {
            "openai": {"kind": "openai", "base_url": f"{url['openai']}/v1", "api_key": "test-key"},
            "google": {"kind": "google", "base_url": url["google"], "api_key": "test-key"},
            "vertex": {"kind": "vertex", "base_url": url["google"], "api_key": "test-key",
                       "project": "demo", "location": "us-central1"},
            "stability": {"kind": "stability", "base_url": url["stability"], "api_key": "test-key"},
            "cloudflare": {"kind": "cloudflare", "base_url": url["cloudflare"],
                           "api_key": "test-key", "account_id": "acct-1"},
            "worker": {"kind": "cloudflare_worker", "base_url": f"{url['cloudflare']}/worker",
                       "method": "GET"},
        },
        "models": {"my-worker": WORKER_MODEL},
        "routes": {
            "imagen-4": [
                {"model": "imagen-4.0-ultra-generate-001"},
                {"model": "imagen-4.0-generate-001"},
            ]
        },
    }  # fmt: skip
    config_file = tmp / "imagegate.json.yaml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    env = {"IMAGEGATE_CONFIG_FILE": str(config_file)}
    data_dir = tmp / "data"
    created = run_cli(
        "keys", "create", "--name", "e2e", data_dir=data_dir, env=environment(data_dir, **env)
    )
    assert created.returncode == 0, created.stderr
    server = ServerProcess(data_dir, env=env).start()
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=created.stdout.strip())
    try:
        yield Deployment(client, DataDir.at(data_dir), states)
    finally:
        server.stop()
        for fake in servers.values():
            fake.stop()


def _images(result: openai.types.ImagesResponse) -> list[Image.Image]:
    images = []
    for item in result.data or []:
        image = Image.open(io.BytesIO(base64.b64decode(item.b64_json or "")))
        image.load()
        images.append(image)
    return images


def _ratio(image: Image.Image) -> float:
    return image.width / image.height


@pytest.mark.parametrize(
    ("model", "fake", "kwargs", "ratio", "count"),
    [
        ("gpt-image-1", "openai", {"size": "1536x1024", "output_format": "webp"}, 1.5, 1),
        ("dall-e-3", "openai", {"size": "1792x1024", "style": "natural"}, 1.75, 1),
        ("imagen-4.0-generate-001", "google", {"n": 2, "size": "1024x1024"}, 1.0, 2),
        ("imagen-4.0-generate-001-vertex", "google", {"extra_body": {"seed": 5}}, 1.0, 1),
        ("imagen-4", "google", {"size": "1792x1024"}, 16 / 9, 1),
        ("gemini-2.5-flash-image", "google", {"n": 2, "size": "1024x1536"}, 2 / 3, 2),
        ("stable-image-core", "stability", {"size": "1536x1024"}, 1.5, 1),
        ("sd3.5-large", "stability", {"extra_body": {"negative_prompt": "blur"}}, 1.0, 1),
        ("flux-1-schnell", "cloudflare", {"output_format": "png"}, 1.0, 1),
        ("sdxl", "cloudflare", {"size": "1024x1024"}, 1.0, 1),
        ("my-worker", "cloudflare", {"n": 2}, 1.0, 2),
    ],
)
def test_the_sdk_reaches_every_provider_through_imagegate(
    deployment: Deployment,
    model: str,
    fake: str,
    kwargs: dict[str, object],
    ratio: float,
    count: int,
) -> None:
    calls_before = len(deployment.fakes[fake].calls)
    result = deployment.client.images.generate(
        model=model,
        prompt=f"a lighthouse at dusk for {model}",
        response_format="b64_json",
        **kwargs,  # type: ignore[arg-type]
    )
    images = _images(result)
    assert len(images) == count
    for image in images:
        assert abs(_ratio(image) - ratio) < 0.12
    wanted = str(kwargs.get("output_format", "png")).upper()
    assert {image.format for image in images} == {wanted}
    assert len(deployment.fakes[fake].calls) > calls_before


def test_edits_go_through_with_every_reference_image(deployment: Deployment) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 120, 255)).save(buffer, "PNG")
    png = buffer.getvalue()
    result = deployment.client.images.edit(
        model="gpt-image-1",
        image=[("a.png", png, "image/png"), ("b.png", png, "image/png")],
        prompt="make it night",
        size="1024x1024",
        response_format="b64_json",
    )
    assert len(_images(result)) == 1
    sent = deployment.fakes["openai"].calls[-1]
    assert sent.path == "/v1/images/edits"
    assert sent.body.count(b'name="image[]"') == 2


def test_a_provider_refusal_reaches_the_sdk_as_a_bad_request(deployment: Deployment) -> None:
    deployment.fakes["stability"].faults.next(Fault.safety())
    with pytest.raises(openai.BadRequestError) as caught:
        deployment.client.images.generate(model="stable-image-core", prompt="something")
    assert caught.value.code == "content_policy_violation"


def test_models_lists_every_configured_model(deployment: Deployment) -> None:
    names = {model.id for model in deployment.client.models.list()}
    assert {"builtin", "gpt-image-1", "imagen-4", "flux-1-schnell", "my-worker"} <= names


def test_failed_and_retried_calls_are_recorded(deployment: Deployment) -> None:
    deployment.fakes["cloudflare"].faults.next(Fault.error(503))
    deployment.client.images.generate(model="sdxl", prompt="a retried lighthouse")
    [(attempts, log)] = deployment.data.rows(
        "SELECT attempts, attempt_log FROM generations ORDER BY created_at DESC LIMIT 1"
    )
    assert attempts == 2
    assert [a["outcome"] for a in json.loads(str(log))] == ["upstream_error", "ok"]
