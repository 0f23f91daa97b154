"""The generate page, without JavaScript: the form submits, waits and shows the images."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
from PIL import Image
from tests.fakes.chat import build_chat_fake, enhanced
from tests.fakes.server import FakeServer, FakeState
from tests.support.apps import app_client

from imagegate.container import Services
from imagegate.models import RateLimits, Role
from imagegate.settings import Settings


async def _signed_in_token(client: httpx.AsyncClient, key: str) -> str:
    assert (await client.post("/signin", data={"api_key": key})).status_code == 303
    page = (await client.get("/generate")).text
    assert 'name="prompt"' in page
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def test_generate_shows_the_image_and_offers_regenerate(
    client: httpx.AsyncClient, user_key: str
) -> None:
    token = await _signed_in_token(client, user_key)
    form = {"csrf": token, "prompt": "a green kite", "model": "builtin", "size": "256x256"}
    page = await client.post("/generate", data=form)
    assert page.status_code == 200
    assert 'name="regenerate"' in page.text
    src = page.text.split('<img src="', 1)[1].split('"', 1)[0]
    with Image.open(io.BytesIO((await client.get(src)).content)) as image:
        assert image.size == (256, 256)
    again = await client.post("/generate", data=form | {"regenerate": "1"})
    assert "Result (miss)" in again.text or "Result (bypass)" in again.text
    assert "a green kite" in (await client.get("/")).text.lower()


async def test_a_failure_is_explained_and_the_form_kept_for_try_again(
    client: httpx.AsyncClient, user_key: str
) -> None:
    token = await _signed_in_token(client, user_key)
    form = {"csrf": token, "prompt": "a tiny kite", "model": "builtin", "size": "3x3"}
    page = await client.post("/generate", data=form)
    assert '<div role="alert" class="error" id="server-error"><p>Something went wrong' in page.text
    assert "Try again" in page.text
    assert "a tiny kite" in page.text


async def test_a_forged_generate_is_refused(client: httpx.AsyncClient, user_key: str) -> None:
    await _signed_in_token(client, user_key)
    page = await client.post("/generate", data={"csrf": "forged", "prompt": "x"})
    assert page.status_code == 403


async def test_the_generate_page_counts_against_the_keys_request_limit(
    client: httpx.AsyncClient, services: Services
) -> None:
    key = (
        await services.keys.create("slow-user", rate_limits=RateLimits(requests_per_minute=1))
    ).secret
    token = await _signed_in_token(client, key)
    form = {"csrf": token, "prompt": "a paper crane", "model": "builtin", "size": "256x256"}
    first = await client.post("/generate", data=form)
    assert 'name="regenerate"' in first.text
    second = await client.post("/generate", data=form | {"prompt": "a paper boat"})
    assert (
        '<div role="alert" class="error" id="server-error"><p>Something went wrong' in second.text
    )  # refused: one request a minute, as over the API
    assert 'name="regenerate"' not in second.text


async def test_the_enhance_toggle_shows_only_with_an_enhancer(
    client: httpx.AsyncClient, user_key: str, tmp_path: Path
) -> None:
    await _signed_in_token(client, user_key)
    assert 'name="enhance_prompt"' not in (await client.get("/generate")).text

    chat = FakeState()
    with FakeServer(build_chat_fake(chat)) as fake:
        settings = Settings(
            data_dir=tmp_path / "enhanced",
            public_url="http://testserver",
            enhancer={"base_url": f"{fake.base_url}/v1", "api_key": "test-key"},  # type: ignore[arg-type]
        )
        async with app_client(settings) as (services, web):
            key = (await services.keys.create("user-e", Role.USER)).secret
            token = await _signed_in_token(web, key)
            assert 'name="enhance_prompt"' in (await web.get("/generate")).text
            form = {"csrf": token, "prompt": "a kite", "model": "builtin", "size": "256x256"}
            plain = await web.post("/generate", data=form)
            assert 'class="revised-prompt"' not in plain.text
            asked = await web.post(
                "/generate", data=form | {"prompt": "a red kite", "enhance_prompt": "1"}
            )
    assert f'Revised prompt: <q class="revised-prompt">{enhanced("a red kite")}</q>' in asked.text
    assert 'name="enhance_prompt" value="1" checked' in asked.text
    assert len(chat.calls) == 1


async def test_reference_images_work_without_javascript_too(
    client: httpx.AsyncClient, user_key: str
) -> None:
    token = await _signed_in_token(client, user_key)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 90, 200)).save(buffer, "PNG")
    form = {"csrf": token, "prompt": "the same, at night", "model": "builtin", "size": "256x256"}
    files = {"reference": ("blue.png", buffer.getvalue(), "image/png")}
    page = await client.post("/generate", data=form, files=files)
    assert page.status_code == 200
    assert "Something went wrong" not in page.text
    src = page.text.split('<img src="', 1)[1].split('"', 1)[0]
    with Image.open(io.BytesIO((await client.get(src)).content)) as image:
        assert image.size == (256, 256)
    plain = await client.post("/generate", data=form)  # the same without the reference
    assert plain.text.split('<img src="', 1)[1].split('"', 1)[0] != src


async def test_a_model_that_takes_aspect_ratios_offers_sizes_labelled_with_the_ratio_drawn(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        public_url="http://testserver",
        providers={"google": {"kind": "google", "api_key": "test-key"}},  # type: ignore[dict-item]
    )
    async with app_client(settings) as (services, web):
        key = (await services.keys.create("user-g", Role.USER)).secret
        await _signed_in_token(web, key)
        page = (await web.get("/generate")).text
    imagen = page.split('<option value="imagen-4.0-generate-001"', 1)[1].split("</option>", 1)[0]
    labels = imagen.split('data-size-labels="', 1)[1].split('"', 1)[0].split("|")
    assert labels[:3] == [
        "1024x1024 (drawn at 1:1)",
        "1536x1024 (drawn at 4:3)",
        "1024x1536 (drawn at 3:4)",
    ]
    assert imagen.endswith("imagen-4.0-generate-001 (1:1, 3:4, 4:3, 9:16, 16:9)")
    builtin = page.split('<option value="builtin"', 1)[1].split("</option>", 1)[0]
    assert 'data-size-labels="256x256|512x512' in builtin  # sizes as they are
