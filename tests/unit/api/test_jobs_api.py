"""The jobs API through the real app, real SQLite and a real in-process worker."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from PIL import Image
from tests.support import DataDir

from imagegate.container import Services
from imagegate.models import Role
from imagegate.queue.worker import Worker

BODY = {"model": "builtin", "prompt": "a lighthouse", "size": "256x256"}


@pytest.fixture
async def worker(services: Services) -> AsyncIterator[Worker]:
    running = Worker(
        services.job_runs, services.jobs, concurrency=4, poll_seconds=0.05, shutdown_seconds=5
    )
    task = asyncio.create_task(running.run())
    yield running
    running.stop()
    await task


async def _finished(client: httpx.AsyncClient, job_id: str, auth: dict[str, str]) -> dict:
    for _ in range(200):
        body = (await client.get(f"/v1/jobs/{job_id}", headers=auth)).json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish: {body}")


async def test_a_job_is_queued_with_its_place_then_runs_to_a_real_image(
    client: httpx.AsyncClient, auth: dict[str, str], services: Services
) -> None:
    first = await client.post("/v1/jobs", json=BODY, headers=auth)
    second = await client.post("/v1/jobs", json={**BODY, "prompt": "b"}, headers=auth)
    assert first.status_code == 202
    job = first.json()
    assert (job["status"], job["position"], job["result"]) == ("queued", 1, None)
    assert second.json()["position"] == 2
    assert first.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["urls"]["events"] == f"http://testserver/v1/jobs/{job['id']}/events"

    running = Worker(services.job_runs, services.jobs, concurrency=2, poll_seconds=0.05,
                     shutdown_seconds=5)  # fmt: skip
    task = asyncio.create_task(running.run())
    try:
        done = await _finished(client, job["id"], auth)
    finally:
        running.stop()
        await task
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1
    assert done["cache"] == "generated"
    assert done["started_at"] is not None
    assert done["finished_at"] >= done["started_at"]
    (item,) = done["result"]["data"]
    image = Image.open(io.BytesIO((await client.get(item["url"])).content))
    assert image.size == (256, 256)


async def test_prefer_wait_returns_the_finished_job_inline(
    client: httpx.AsyncClient, auth: dict[str, str], worker: Worker
) -> None:
    response = await client.post(
        "/v1/jobs", json={**BODY, "response_format": "b64_json"},
        headers={**auth, "Prefer": "wait=10"},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=10"
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["result"]["data"][0]["b64_json"]


async def test_an_identical_job_is_answered_by_the_cache(
    client: httpx.AsyncClient, auth: dict[str, str], worker: Worker, data_dir: DataDir
) -> None:
    wait = {**auth, "Prefer": "wait=10"}
    first = (await client.post("/v1/jobs", json=BODY, headers=wait)).json()
    again = (await client.post("/v1/jobs", json=BODY, headers=wait)).json()
    assert (first["cache"], again["cache"]) == ("generated", "cache_hit")
    assert first["result"]["data"][0]["url"] == again["result"]["data"][0]["url"]
    assert data_dir.count("generations") == 2


async def test_jobs_are_listed_newest_first_in_pages_and_only_to_their_owner(
    client: httpx.AsyncClient, auth: dict[str, str], services: Services
) -> None:
    ids = [
        (await client.post("/v1/jobs", json={**BODY, "prompt": f"p{i}"}, headers=auth)).json()["id"]
        for i in range(5)
    ]
    page = (await client.get("/v1/jobs?limit=3", headers=auth)).json()
    assert [j["id"] for j in page["data"]] == ids[::-1][:3]
    assert page["has_more"] is True
    rest = (await client.get(f"/v1/jobs?limit=3&cursor={page['next_cursor']}", headers=auth)).json()
    assert [j["id"] for j in rest["data"]] == ids[::-1][3:]
    assert rest["has_more"] is False
    assert rest["next_cursor"] is None

    other = {"Authorization": f"Bearer {(await services.keys.create('user-b', Role.USER)).secret}"}
    assert (await client.get("/v1/jobs", headers=other)).json()["data"] == []
    for path in (f"/v1/jobs/{ids[0]}", f"/v1/jobs/{ids[0]}/events"):
        response = await client.get(path, headers=other)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    cancel = await client.post(f"/v1/jobs/{ids[0]}/cancel", headers=other)
    assert cancel.status_code == 404
    queued = (await client.get("/v1/jobs?status=queued", headers=auth)).json()
    assert len(queued["data"]) == 5


async def test_a_canceled_queued_job_never_runs(
    client: httpx.AsyncClient, auth: dict[str, str], services: Services, data_dir: DataDir
) -> None:
    job = (await client.post("/v1/jobs", json=BODY, headers=auth)).json()
    canceled = (await client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)).json()
    assert canceled["status"] == "canceled"
    assert canceled["finished_at"] is not None
    running = Worker(services.job_runs, services.jobs, concurrency=2, poll_seconds=0.05,
                     shutdown_seconds=5)  # fmt: skip
    task = asyncio.create_task(running.run())
    await asyncio.sleep(0.3)
    running.stop()
    await task
    assert data_dir.count("generations") == 0
    again = (await client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)).json()
    assert again["status"] == "canceled"


async def test_events_stream_the_whole_lifecycle(
    client: httpx.AsyncClient, auth: dict[str, str], services: Services
) -> None:
    job = (await client.post("/v1/jobs", json=BODY, headers=auth)).json()
    events: list[tuple[str, dict]] = []

    async def read() -> None:
        async with client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=auth) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            name = None
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: ") and name:
                    events.append((name, orjson.loads(line.removeprefix("data: "))))

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.2)  # the stream has replayed the queued state
    running = Worker(services.job_runs, services.jobs, concurrency=2, poll_seconds=0.05,
                     shutdown_seconds=5)  # fmt: skip
    task = asyncio.create_task(running.run())
    try:
        await asyncio.wait_for(reader, 10)
    finally:
        running.stop()
        await task
    names = [name for name, _ in events]
    assert names[0] == "queued"
    assert events[0][1]["position"] == 1
    assert "started" in names
    assert names[-1] == "succeeded"
    assert events[-1][1]["result"]["data"][0]["url"]


async def test_a_batch_of_prompts_runs_every_job_and_reports_progress(
    client: httpx.AsyncClient, auth: dict[str, str], worker: Worker
) -> None:
    response = await client.post(
        "/v1/batches",
        json={"request": BODY, "prompts": [f"tile {i}" for i in range(7)], "concurrency": 2},
        headers=auth,
    )
    assert response.status_code == 202
    batch = response.json()
    assert (batch["total"], batch["concurrency"], len(batch["jobs"])) == (7, 2, 7)
    for _ in range(300):
        batch = (await client.get(f"/v1/batches/{batch['id']}", headers=auth)).json()
        if batch["status"] == "finished":
            break
        await asyncio.sleep(0.02)
    assert batch["counts"]["succeeded"] == 7
    assert batch["progress"] == 1.0
    prompts = {job["result"]["data"][0]["url"] for job in batch["jobs"]}
    assert len(prompts) == 7  # seven different pictures


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({**BODY, "model": "no-such-model"}, 404, "model_not_found"),
        ({**BODY, "size": "300x300"}, 400, "invalid_size"),
        ({**BODY, "priority": 11}, 400, "invalid_value"),
        ({**BODY, "webhook_events": ["done"]}, 400, "invalid_value"),
        ({**BODY, "metadata": {"x": "y" * 5000}}, 400, "invalid_value"),
        ({**BODY, "metadata": {"n": -(2**100)}}, 400, "invalid_value"),  # was a 500 (orjson)
    ],
)
async def test_bad_jobs_are_refused_at_submission(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict, status: int, code: str
) -> None:
    response = await client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_a_batch_needs_requests_or_a_template_with_prompts(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for body in ({}, {"request": BODY}, {"requests": [BODY], "prompts": ["x"]}):
        response = await client.post("/v1/batches", json=body, headers=auth)
        assert response.status_code == 400, body
    too_many = await client.post("/v1/batches", json={"requests": [BODY] * 101}, headers=auth)
    assert too_many.status_code == 400
