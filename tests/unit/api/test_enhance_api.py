"""Prompt enhancement through the real app: a fake chat-completions server rewrites the prompt,
a fake OpenAI Images server draws it (its call log shows what it was given), real SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from tests.fakes.chat import build_chat_fake, enhanced
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault

from imagegate.api.app import create_app
from imagegate.container import Services, build_services
from imagegate.models import GenerationRequest, Role
from imagegate.queue.worker import Worker
from imagegate.services.lanes import QueueWatch
from imagegate.settings import Settings

PROMPT = "a lighthouse at dusk"
BODY = {"model": "gpt-image-1", "prompt": PROMPT, "quality": "low", "enhance_prompt": True}


@dataclass
class Fakes:
    chat: FakeState
    images: FakeState
    chat_url: str
    images_url: str

    def settings(self, tmp_path: Path, **enhancer: object) -> Settings:
        images = {"kind": "openai", "base_url": f"{self.images_url}/v1", "api_key": "test-key"}
        chat = {"base_url": f"{self.chat_url}/v1", "api_key": "test-key", "timeout_seconds": 0.5}
        return Settings(
            data_dir=tmp_path / "data",
            public_url="http://testserver",
            providers={"openai": images},
            enhancer={**chat, **enhancer},
        )  # type: ignore[arg-type]

    def prompts_drawn(self) -> list[str]:
        return [orjson.loads(call.body)["prompt"] for call in self.images.calls]


@dataclass
class App:
    client: httpx.AsyncClient
    services: Services
    auth: dict[str, str]
    admin: dict[str, str]


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    chat, images = FakeState(), FakeState()
    with FakeServer(build_chat_fake(chat)) as c, FakeServer(build_openai_fake(images)) as i:
        yield Fakes(chat, images, c.base_url, i.base_url)


async def _app(settings: Settings) -> AsyncIterator[App]:
    async with build_services(settings) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            user = (await services.keys.create("user-a", Role.USER)).secret
            admin = (await services.keys.create("root", Role.ADMIN)).secret
            yield App(
                http,
                services,
                {"Authorization": f"Bearer {user}"},
                {"Authorization": f"Bearer {admin}"},
            )


@pytest.fixture
async def app(fakes: Fakes, tmp_path: Path) -> AsyncIterator[App]:
    async for built in _app(fakes.settings(tmp_path)):
        yield built


async def _generation(app: App, generation_id: str) -> dict:
    response = await app.client.get(f"/v1/generations/{generation_id}", headers=app.auth)
    assert response.status_code == 200
    return response.json()


async def _event_types(app: App, generation_id: str) -> list[str]:
    response = await app.client.get(
        "/v1/events", params={"generation_id": generation_id}, headers=app.admin
    )
    return [event["type"] for event in response.json()["data"]]


async def test_the_enhanced_prompt_is_drawn_returned_and_stored(fakes: Fakes, app: App) -> None:
    response = await app.client.post("/v1/images/generations", json=BODY, headers=app.auth)
    assert response.status_code == 200
    assert fakes.prompts_drawn() == [enhanced(PROMPT)]
    (item,) = response.json()["data"]
    assert item["revised_prompt"] == enhanced(PROMPT)

    generation = await _generation(app, response.headers["x-imagegate-generation-id"])
    assert generation["prompt"] == PROMPT  # the user's own
    assert generation["enhanced_prompt"] == enhanced(PROMPT)
    assert generation["prompt_enhancement"] == {"status": "enhanced", "reason": None}
    assert generation["parameters"]["enhance_prompt"] is True
    (image,) = generation["images"]
    detail = (await app.client.get(f"/v1/images/{image['id']}", headers=app.auth)).json()
    assert (detail["prompt"], detail["revised_prompt"]) == (PROMPT, enhanced(PROMPT))
    assert "prompt_enhanced" in await _event_types(app, generation["id"])


async def test_the_same_prompt_twice_is_a_cache_hit_with_one_rewrite(
    fakes: Fakes, app: App
) -> None:
    first = await app.client.post("/v1/images/generations", json=BODY, headers=app.auth)
    again = await app.client.post("/v1/images/generations", json=BODY, headers=app.auth)
    assert [first.headers["x-imagegate-cache"], again.headers["x-imagegate-cache"]] == [
        "miss", "hit",
    ]  # fmt: skip
    assert (len(fakes.chat.calls), len(fakes.images.calls)) == (1, 1)
    assert again.json()["data"][0]["revised_prompt"] == enhanced(PROMPT)
    # the same prompt without enhancement is another picture: not this cache entry
    plain = await app.client.post(
        "/v1/images/generations", json={**BODY, "enhance_prompt": False}, headers=app.auth
    )
    assert plain.headers["x-imagegate-cache"] == "miss"
    assert fakes.prompts_drawn()[-1] == PROMPT
    assert plain.json()["data"][0]["revised_prompt"] is None


async def test_a_concurrent_identical_request_coalesces_onto_one_rewrite(
    fakes: Fakes, app: App
) -> None:
    fakes.chat.faults.next(Fault.latency(0.2))
    answers = await asyncio.gather(
        *(app.client.post("/v1/images/generations", json=BODY, headers=app.auth)
          for _ in range(3))
    )  # fmt: skip
    assert sorted(a.headers["x-imagegate-cache"] for a in answers) == [
        "coalesced", "coalesced", "miss",
    ]  # fmt: skip
    assert (len(fakes.chat.calls), fakes.prompts_drawn()) == (1, [enhanced(PROMPT)])
    assert {a.json()["data"][0]["revised_prompt"] for a in answers} == {enhanced(PROMPT)}


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(Fault.error(500), "error"), (Fault.hang(5), "timeout"), (Fault.malformed(), "error")],
)
async def test_a_failing_enhancer_never_fails_the_generation(
    fakes: Fakes, app: App, fault: Fault, reason: str
) -> None:
    fakes.chat.faults.next(fault)
    response = await app.client.post("/v1/images/generations", json=BODY, headers=app.auth)
    assert response.status_code == 200
    assert fakes.prompts_drawn() == [PROMPT]
    assert response.json()["data"][0]["revised_prompt"] is None
    generation = await _generation(app, response.headers["x-imagegate-generation-id"])
    assert generation["outcome"] == "generated"
    assert generation["enhanced_prompt"] is None
    assert generation["prompt_enhancement"] == {"status": "fallback", "reason": reason}
    assert "prompt_enhancement_fallback" in await _event_types(app, generation["id"])
    # a fallback is not cached: the next identical request tries the enhancer again
    again = await app.client.post("/v1/images/generations", json=BODY, headers=app.auth)
    assert again.headers["x-imagegate-cache"] == "miss"
    assert fakes.prompts_drawn() == [PROMPT, enhanced(PROMPT)]


async def test_garbage_from_the_llm_is_not_drawn(fakes: Fakes, app: App) -> None:
    fakes.chat.extra["content"] = "Sure! Here is the enhanced prompt:\n\n```\n```"
    response = await app.client.post("/v1/images/generations", json=BODY, headers=app.auth)
    assert response.status_code == 200
    assert fakes.prompts_drawn() == [PROMPT]
    generation = await _generation(app, response.headers["x-imagegate-generation-id"])
    assert generation["prompt_enhancement"] == {"status": "fallback", "reason": "empty"}


async def test_the_enhancer_down_falls_back(fakes: Fakes, tmp_path: Path) -> None:
    with FakeServer(build_chat_fake(FakeState())) as gone:
        dead = gone.base_url
    settings = fakes.settings(tmp_path)
    settings.enhancer.base_url = f"{dead}/v1"
    async for app in _app(settings):
        response = await app.client.post("/v1/images/generations", json=BODY, headers=app.auth)
        assert response.status_code == 200
        assert fakes.prompts_drawn() == [PROMPT]
        generation = await _generation(app, response.headers["x-imagegate-generation-id"])
        assert generation["prompt_enhancement"] == {"status": "fallback", "reason": "error"}
        assert "prompt_enhancement_fallback" in await _event_types(app, generation["id"])


async def test_a_models_default_applies_unless_the_request_says_no(
    fakes: Fakes, tmp_path: Path
) -> None:
    async for app in _app(fakes.settings(tmp_path, models=["gpt-image-1"])):
        body = {k: v for k, v in BODY.items() if k != "enhance_prompt"}
        by_default = await app.client.post("/v1/images/generations", json=body, headers=app.auth)
        assert by_default.json()["data"][0]["revised_prompt"] == enhanced(PROMPT)
        declined = await app.client.post(
            "/v1/images/generations",
            json={**body, "prompt": "a barn", "enhance_prompt": False},
            headers=app.auth,
        )
        assert declined.json()["data"][0]["revised_prompt"] is None
        assert fakes.prompts_drawn() == [enhanced(PROMPT), "a barn"]
        assert len(fakes.chat.calls) == 1


async def test_without_an_enhancer_the_ask_is_answered_with_the_prompt_as_given(
    fakes: Fakes, tmp_path: Path
) -> None:
    settings = fakes.settings(tmp_path)
    settings.enhancer.base_url = None
    async for app in _app(settings):
        response = await app.client.post("/v1/images/generations", json=BODY, headers=app.auth)
        assert response.status_code == 200
        assert fakes.prompts_drawn() == [PROMPT]
        generation = await _generation(app, response.headers["x-imagegate-generation-id"])
        assert generation["prompt_enhancement"] == {
            "status": "fallback",
            "reason": "not_configured",
        }
    assert fakes.chat.calls == []


async def test_a_job_is_enhanced_too(fakes: Fakes, app: App) -> None:
    worker = Worker(app.services.job_runs, app.services.jobs, concurrency=2, poll_seconds=0.05,
                    shutdown_seconds=5)  # fmt: skip
    task = asyncio.create_task(worker.run())
    try:
        queued = await app.client.post("/v1/jobs", json=BODY, headers=app.auth)
        assert queued.status_code == 202
        for _ in range(300):
            job = (await app.client.get(f"/v1/jobs/{queued.json()['id']}", headers=app.auth)).json()
            if job["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await task
    assert job["status"] == "succeeded"
    assert job["result"]["data"][0]["revised_prompt"] == enhanced(PROMPT)
    assert fakes.prompts_drawn() == [enhanced(PROMPT)]


async def test_a_non_boolean_enhance_prompt_is_a_400(app: App) -> None:
    response = await app.client.post(
        "/v1/images/generations", json={**BODY, "enhance_prompt": "yes"}, headers=app.auth
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "enhance_prompt"


async def test_a_front_end_hears_when_the_prompt_is_being_enhanced(app: App) -> None:
    heard: list[str] = []
    watch = QueueWatch(on_start=lambda: heard.append("start"),
                       on_enhancing=lambda: heard.append("enhancing"))  # fmt: skip
    principal = await app.services.keys.local_cli_principal()
    request = GenerationRequest(
        prompt=PROMPT, model="gpt-image-1", quality="low", enhance_prompt=True
    )
    made = await app.services.generations.generate(principal, request, watch=watch)
    assert made.generation.enhanced_prompt == enhanced(PROMPT)
    hit = await app.services.generations.generate(principal, request, watch=watch)
    assert hit.cache_status == "hit"
    assert heard == ["start", "enhancing"]  # the cache hit asked no LLM
