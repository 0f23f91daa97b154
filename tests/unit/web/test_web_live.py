"""The endpoints the pages' scripts call (/web/...): session cookie, CSRF, the caller's own."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from PIL import Image
from tests.fakes.chat import build_chat_fake, enhanced
from tests.fakes.server import FakeServer, FakeState
from tests.support.apps import app_client

from imagegate.container import Services
from imagegate.models import Role
from imagegate.queue.worker import Worker
from imagegate.settings import Settings

FORM = {"prompt": "a paper lantern", "model": "builtin", "size": "256x256"}


@pytest.fixture
async def worker(services: Services) -> AsyncIterator[Worker]:
    running = Worker(
        services.job_runs, services.jobs, concurrency=2, poll_seconds=0.05, shutdown_seconds=5
    )
    task = asyncio.create_task(running.run())
    yield running
    running.stop()
    await task


async def _session(services: Services, app_client: httpx.AsyncClient, name: str) -> str:
    """Signs ``app_client`` in as a new user ``name``; returns the session's CSRF token."""
    key = (await services.keys.create(name, Role.USER)).secret
    assert (await app_client.post("/signin", data={"api_key": key})).status_code == 303
    page = (await app_client.get("/generate")).text
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


@pytest.fixture
async def other(services: Services, client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A second browser (its own cookie jar) on the same app."""
    async with httpx.AsyncClient(transport=client._transport, base_url="http://testserver") as b:
        yield b


async def _events(client: httpx.AsyncClient, path: str) -> list[tuple[str, dict]]:
    """The stream's events until it ends."""
    events: list[tuple[str, dict]] = []
    async with client.stream("GET", path) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = None
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") and name:
                events.append((name, orjson.loads(line.removeprefix("data: "))))
    return events


async def test_a_job_submitted_by_script_streams_queue_position_then_the_image(
    client: httpx.AsyncClient, services: Services
) -> None:
    token = await _session(services, client, "alice")
    queued = await client.post("/web/jobs", data=FORM, headers={"X-CSRF-Token": token})
    assert queued.status_code == 202, queued.text
    job = queued.json()
    assert (job["status"], job["position"]) == ("queued", 1)

    # (ASGITransport hands the stream over whole once it ends; the browser suite sees it live)
    reader = asyncio.create_task(_events(client, job["events"]))
    running = Worker(services.job_runs, services.jobs, concurrency=1, poll_seconds=0.05,
                     shutdown_seconds=5)  # fmt: skip
    task = asyncio.create_task(running.run())
    try:
        events = await asyncio.wait_for(reader, 20)
    finally:
        running.stop()
        await task
    assert {name for name, _ in events} == {"state"}
    assert events[-1][1]["status"] == "succeeded"
    last = events[-1][1]
    assert last["cache"] == "generated"
    (image,) = last["images"]
    # the placeholder is made just after the image is stored: there, or null for a moment
    assert image["placeholder"] is None or image["placeholder"].startswith("data:image/")
    with Image.open(io.BytesIO((await client.get(image["url"])).content)) as decoded:
        assert decoded.size == (256, 256)


async def test_regenerate_forces_a_fresh_image_and_variations_a_new_one(
    client: httpx.AsyncClient, services: Services, worker: Worker
) -> None:
    token = await _session(services, client, "alice")
    headers = {"X-CSRF-Token": token}

    async def run(**extra: str) -> dict:
        job = (await client.post("/web/jobs", data=FORM | extra, headers=headers)).json()
        return (await _events(client, job["events"]))[-1][1]

    first = await run()
    assert first["cache"] == "generated"
    assert (await run())["cache"] == "cache_hit"
    fresh = await run(intent="regenerate")
    assert fresh["cache"] == "generated"
    assert fresh["images"][0]["url"] == first["images"][0]["url"]  # same picture, made again
    varied = await run(intent="variations")
    assert varied["cache"] == "generated"
    assert varied["images"][0]["url"] != first["images"][0]["url"]


async def test_reference_images_make_the_image_at_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    token = await _session(services, client, "alice")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "orange").save(buffer, "PNG")
    files = [("reference", ("ref.png", buffer.getvalue(), "image/png"))]
    made = await client.post("/web/jobs", data=FORM, files=files, headers={"X-CSRF-Token": token})
    assert made.status_code == 200, made.text
    body = made.json()
    assert body["status"] == "succeeded"
    assert len(body["images"]) == 1


async def test_estimate_before_submitting_says_when_the_cache_would_answer(
    client: httpx.AsyncClient, services: Services, worker: Worker
) -> None:
    token = await _session(services, client, "alice")
    headers = {"X-CSRF-Token": token}
    priced = await client.post("/web/estimate", data=FORM | {"n": "2"}, headers=headers)
    assert priced.status_code == 200, priced.text
    assert priced.json() == {"model": "builtin", "n": 2, "size": "256x256", "quality": "auto",
                             "estimated_cost_usd": "0.0000", "list_cost_usd": "0.0000",
                             "cached": False}  # fmt: skip
    job = (await client.post("/web/jobs", data=FORM, headers=headers)).json()
    await _events(client, job["events"])
    again = (await client.post("/web/estimate", data=FORM, headers=headers)).json()
    assert (again["cached"], again["estimated_cost_usd"]) == (True, "0.0000")
    bad = await client.post("/web/estimate", data=FORM | {"size": "7x7"}, headers=headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "size"


async def test_every_post_needs_the_csrf_token_and_a_session(
    client: httpx.AsyncClient, services: Services
) -> None:
    for path in ("/web/jobs", "/web/estimate"):
        anonymous = await client.post(path, data=FORM)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "invalid_api_key"
    await _session(services, client, "alice")
    for path in ("/web/jobs", "/web/estimate"):
        forged = await client.post(path, data=FORM, headers={"X-CSRF-Token": "guess"})
        assert forged.status_code == 403
        assert forged.json()["error"]["code"] == "csrf_token_invalid"
    assert (await client.get("/web/images")).status_code == 200


async def test_another_users_job_and_images_are_not_found(
    client: httpx.AsyncClient, other: httpx.AsyncClient, services: Services, worker: Worker
) -> None:
    token = await _session(services, client, "alice")
    job = (await client.post("/web/jobs", data=FORM, headers={"X-CSRF-Token": token})).json()
    await _events(client, job["events"])
    assert len((await client.get("/web/images")).json()["images"]) == 1

    await _session(services, other, "bob")
    for path in (f"/web/jobs/{job['id']}", job["events"]):
        refused = await other.get(path)
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "not_found"
    assert (await other.get("/web/images")).json() == {"images": [], "next_cursor": None}
    signed_out = await httpx.AsyncClient(
        transport=client._transport, base_url="http://testserver"
    ).get(f"/web/jobs/{job['id']}")
    assert signed_out.status_code == 401


async def test_gallery_pages_follow_the_keyset_cursor_and_filters(
    client: httpx.AsyncClient, services: Services, worker: Worker
) -> None:
    token = await _session(services, client, "alice")
    for prompt in ("red fox", "blue whale", "red panda"):
        job = await client.post("/web/jobs", data=FORM | {"prompt": prompt},
                                headers={"X-CSRF-Token": token})  # fmt: skip
        await _events(client, job.json()["events"])
    from imagegate.web import live

    seen: list[str] = []
    cursor = None
    original, live.PAGE_SIZE = live.PAGE_SIZE, 2
    try:
        while True:
            params = {"cursor": cursor} if cursor else {}
            page = (await client.get("/web/images", params=params)).json()
            seen += [item["prompt"] for item in page["images"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    finally:
        live.PAGE_SIZE = original
    assert seen == ["red panda", "blue whale", "red fox"]
    await services.thumbnails.idle()  # placeholders are made just after each image is stored
    red = (await client.get("/web/images", params={"q": "red"})).json()["images"]
    assert [item["prompt"] for item in red] == ["red panda", "red fox"]
    assert red[0]["placeholder"].startswith("data:image/")
    assert (await client.get("/web/images", params={"model": "dall-e-3"})).json()["images"] == []
    future = (await client.get("/web/images", params={"from": "2999-01-01"})).json()
    assert future["images"] == []
    bad = await client.get("/web/images", params={"from": "soon"})
    assert bad.status_code == 400


async def test_a_scripted_job_asks_for_prompt_enhancement_when_ticked(tmp_path: Path) -> None:
    chat = FakeState()
    with FakeServer(build_chat_fake(chat)) as fake:
        settings = Settings(
            data_dir=tmp_path / "enhanced",
            public_url="http://testserver",
            enhancer={"base_url": f"{fake.base_url}/v1", "api_key": "test-key"},  # type: ignore[arg-type]
        )
        async with app_client(settings) as (services, web):
            token = await _session(services, web, "erin")
            form = FORM | {"prompt": "a red kite", "enhance_prompt": "1"}
            queued = await web.post("/web/jobs", data=form, headers={"X-CSRF-Token": token})
            assert queued.status_code == 202, queued.text
            running = Worker(services.job_runs, services.jobs, concurrency=1,
                             poll_seconds=0.05, shutdown_seconds=5)  # fmt: skip
            task = asyncio.create_task(running.run())
            try:
                events = await asyncio.wait_for(_events(web, queued.json()["events"]), 20)
            finally:
                running.stop()
                await task
    (image,) = events[-1][1]["images"]
    assert image["revised_prompt"] == enhanced("a red kite")
    assert len(chat.calls) == 1
