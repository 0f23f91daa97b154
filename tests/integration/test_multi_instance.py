"""Two gateway processes and two worker processes on one PostgreSQL database, one Redis and one
S3 bucket (moto's server) behave as one imagegate: one cache, one single-flight, one set of rate
limits and budgets, one job queue, one library of images.

Each process has a data dir of its own (nothing shared on local disk), and each worker calls the
provider fake on a port of its own, so the fake's call log says which worker ran which job. The
cluster is started once for the module; every test takes its own prompts and keys and counts
only its own upstream calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import random
import string
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.ext.asyncio import create_async_engine
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault, RecordedCall
from tests.support import create_postgres_database, drop_postgres_database
from tests.support.processes import ServerProcess, WorkerProcess, openai_provider
from tests.support.redis import delete_prefix, unique_prefix
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server

from imagegate.container import build_services
from imagegate.models import Limits, RateLimits
from imagegate.settings import DatabaseSettings, Settings

PREFIX = "images/"
READY_SECONDS = 90  # four processes importing everything at once on two busy cores
GPT = {"model": "gpt-image-1", "size": "1024x1024", "quality": "low"}
DALLE_PRICE = 16_000  # dall-e-2 256x256: $0.016 per image, in micro-USD


@dataclass
class Cluster:
    gateways: list[ServerProcess]
    workers: list[WorkerProcess]
    keys: dict[str, str]
    upstream: FakeState
    worker_ports: dict[str, int]
    """Which port of the provider fake each worker calls."""
    gateway_port: int
    database_url: str
    bucket: str
    s3: S3Server
    data_dirs: list[Path] = field(default_factory=list)

    def auth(self, key: str = "main") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}"}

    def calls(self, marker: str) -> list[RecordedCall]:
        """Upstream generation calls whose prompt contains ``marker``."""
        return [c for c in self.upstream.calls if marker in json.loads(c.body)["prompt"]]

    def stored(self, key: str) -> bytes:
        body = self.s3.client().get_object(Bucket=self.bucket, Key=PREFIX + key)["Body"]
        return bytes(body.read())

    async def rows(self, query: str, **params: object) -> list[tuple[Any, ...]]:
        engine = create_async_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in await conn.execute(sa.text(query), params)]
        finally:
            await engine.dispose()


def _config(fake_url: str, s3: S3Server, bucket: str) -> dict[str, object]:
    s3_settings = {
        "bucket": bucket,
        "prefix": PREFIX,
        "endpoint_url": s3.endpoint_url,
        "region": REGION,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "addressing_style": "path",
    }
    return {"providers": openai_provider(fake_url), "storage": {"backend": "s3", "s3": s3_settings}}


def _write_config(folder: Path, config: dict[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "imagegate.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


async def _create_keys(data_dir: Path, database_url: str) -> dict[str, str]:
    """The keys the tests use, made in this process (which also migrates the database): one
    plain, one with a request limit of 10 a minute, one with a budget of three images a day."""
    settings = Settings(data_dir=data_dir, database=DatabaseSettings(url=database_url))
    async with build_services(settings) as services:
        made = {
            "main": await services.keys.create("main"),
            "limited": await services.keys.create(
                "limited", rate_limits=RateLimits(requests_per_minute=10)
            ),
            "budgeted": await services.keys.create(
                "budgeted", limits=Limits(budget_micro_usd_day=3 * DALLE_PRICE)
            ),
        }
    return {name: issued.secret for name, issued in made.items()}


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str, s3_server: S3Server
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    database_url = asyncio.run(create_postgres_database(postgres_url))
    redis_prefix = unique_prefix()
    bucket = s3_server.new_bucket()
    state = FakeState()
    fakes = [FakeServer(build_openai_fake(state)).start() for _ in range(3)]
    gateways: list[ServerProcess] = []
    workers: list[WorkerProcess] = []
    env = {
        "IMAGEGATE_DATABASE__URL": database_url,
        "IMAGEGATE_REDIS_URL": redis_url,
        "IMAGEGATE_REDIS_PREFIX": redis_prefix,
        "IMAGEGATE_JOBS__EMBEDDED_WORKERS": "false",
        "IMAGEGATE_JOBS__POLL_SECONDS": "0.1",
        # limits under test are the keys' own; the defaults would only add noise
        "IMAGEGATE_LIMITS__REQUESTS_PER_MINUTE": "0",
        "IMAGEGATE_LIMITS__IMAGES_PER_MINUTE": "0",
        "IMAGEGATE_LIMITS__CONCURRENT_GENERATIONS": "0",
    }
    try:
        keys = asyncio.run(_create_keys(root / "keys", database_url))
        gateway_config = _write_config(
            root / "config", _config(fakes[0].base_url, s3_server, bucket)
        )
        gateway_env = {**env, "IMAGEGATE_CONFIG_FILE": str(gateway_config)}
        gateways = [
            ServerProcess(root / f"gateway-{i}" / "data", env=gateway_env) for i in range(2)
        ]
        for i, fake in enumerate(fakes[1:]):
            folder = root / f"worker-{i}"
            config = _write_config(folder, _config(fake.base_url, s3_server, bucket))
            worker_env = {**env, "IMAGEGATE_CONFIG_FILE": str(config)}
            workers.append(WorkerProcess(folder / "data", worker_env, f"worker-{i}", 2))
        with ThreadPoolExecutor(max_workers=4) as pool:  # all four start at once
            started = [pool.submit(g.start, READY_SECONDS) for g in gateways]
            started += [
                pool.submit(lambda w=w: w.start().wait_until_running(READY_SECONDS))
                for w in workers
            ]
            for future in started:
                future.result()
        yield Cluster(
            gateways=gateways,
            workers=workers,
            keys=keys,
            upstream=state,
            worker_ports={w.name: fake.port for w, fake in zip(workers, fakes[1:], strict=True)},
            gateway_port=fakes[0].port,
            database_url=database_url,
            bucket=bucket,
            s3=s3_server,
            data_dirs=[
                root / f"{kind}-{i}" / "data" for kind in ("gateway", "worker") for i in range(2)
            ],
        )
    finally:
        for process in [*workers, *gateways]:
            process.stop()
        for fake in fakes:
            fake.stop()
        asyncio.run(delete_prefix(redis_url, redis_prefix))
        asyncio.run(drop_postgres_database(postgres_url, database_url))


@pytest.fixture
def cluster_for_test(cluster: Cluster) -> Iterator[Cluster]:
    """The shared cluster, with no faults left over from another test."""
    cluster.upstream.faults.clear()
    yield cluster
    cluster.upstream.faults.clear()


def _marker() -> str:
    """A word of random letters: unique to one test, and one search token (hex could read as a
    number to PostgreSQL's text search parser)."""
    return "".join(random.choice(string.ascii_lowercase) for _ in range(12))


def _file_key(url: str) -> str:
    return url.rpartition("/files/")[2]


async def _spread(
    cluster: Cluster, bodies: list[dict[str, Any]], key: str = "main"
) -> list[httpx.Response]:
    """All of ``bodies`` at once, the even ones to gateway 0, the odd ones to gateway 1."""
    async with httpx.AsyncClient(timeout=90) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{cluster.gateways[i % 2].base_url}/v1/images/generations",
                    json=body,
                    headers=cluster.auth(key),
                )
                for i, body in enumerate(bodies)
            )
        )


async def test_a_request_repeated_on_the_other_gateway_is_a_cache_hit(
    cluster_for_test: Cluster,
) -> None:
    cluster = cluster_for_test
    marker = _marker()
    body = {**GPT, "prompt": f"a lighthouse at dusk {marker}"}
    a, b = cluster.gateways
    async with httpx.AsyncClient(timeout=90) as client:
        first = await client.post(
            f"{a.base_url}/v1/images/generations", json=body, headers=cluster.auth()
        )
        second = await client.post(
            f"{b.base_url}/v1/images/generations", json=body, headers=cluster.auth()
        )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert (first.headers["x-imagegate-cache"], second.headers["x-imagegate-cache"]) == (
        "miss",
        "hit",
    )
    assert len(cluster.calls(marker)) == 1  # B made no upstream call
    keys = {_file_key(r.json()["data"][0]["url"]) for r in (first, second)}
    assert len(keys) == 1
    outcomes = await cluster.rows(
        "SELECT outcome FROM generations WHERE prompt = :p ORDER BY created_at", p=body["prompt"]
    )
    assert outcomes == [("generated",), ("cache_hit",)]
    assert cluster.stored(keys.pop())  # in the bucket


async def test_identical_concurrent_requests_on_both_gateways_make_one_upstream_call(
    cluster_for_test: Cluster,
) -> None:
    cluster = cluster_for_test
    marker = _marker()
    cluster.upstream.faults.next(Fault.latency(4))  # the one call is slow: the rest overlap it
    body = {**GPT, "prompt": f"one fox for everyone {marker}"}
    responses = await _spread(cluster, [body] * 12)
    assert [r.status_code for r in responses] == [200] * 12, [r.text for r in responses][:2]
    assert len(cluster.calls(marker)) == 1
    assert len({_file_key(r.json()["data"][0]["url"]) for r in responses}) == 1
    statuses = [r.headers["x-imagegate-cache"] for r in responses]
    assert statuses.count("miss") == 1
    assert set(statuses) <= {"miss", "coalesced", "hit"}
    caller = statuses.index("miss") % 2
    other = statuses[1 - caller :: 2]
    assert "coalesced" in other, statuses  # joined the other process's flight, not its result
    outcomes = await cluster.rows(
        "SELECT outcome, count(*) FROM generations WHERE prompt = :p GROUP BY outcome",
        p=body["prompt"],
    )
    assert dict(outcomes)["generated"] == 1
    assert sum(count for _, count in outcomes) == 12


async def test_a_keys_request_limit_is_counted_across_both_gateways(
    cluster_for_test: Cluster,
) -> None:
    cluster = cluster_for_test
    marker = _marker()
    body = {**GPT, "prompt": f"a limited harbour {marker}"}
    responses = await _spread(cluster, [body] * 16, key="limited")  # 8 per gateway, limit 10
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10, (
        statuses,
        [r.text for r in responses if r.status_code >= 500],
    )
    assert statuses.count(429) == 6
    assert 200 in statuses[0::2]  # each gateway admitted some
    assert 200 in statuses[1::2]
    refused = [r for r in responses if r.status_code == 429]
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limit_exceeded"}
    assert {r.headers["x-ratelimit-remaining-requests"] for r in refused} == {"0"}
    assert len(cluster.calls(marker)) == 1  # the admitted ten: one generation and its reuses


async def test_a_keys_budget_is_spent_once_across_both_gateways(
    cluster_for_test: Cluster,
) -> None:
    cluster = cluster_for_test
    marker = _marker()
    bodies = [
        {"model": "dall-e-2", "size": "256x256", "prompt": f"a budget boat {i} {marker}"}
        for i in range(8)
    ]
    responses = await _spread(cluster, bodies, key="budgeted")  # $0.048: three images
    statuses = [r.status_code for r in responses]
    assert sorted(statuses) == [200] * 3 + [429] * 5, [r.text for r in responses]
    refused = [r for r in responses if r.status_code == 429]
    assert {r.json()["error"]["code"] for r in refused} == {"budget_exceeded"}
    assert len(cluster.calls(marker)) == 3
    [(made, charged)] = await cluster.rows(
        "SELECT count(*), coalesce(sum(cost_micro_usd), 0) FROM generations "
        "WHERE prompt LIKE :p AND outcome = 'generated'",
        p=f"%{marker}",
    )
    assert (made, charged) == (3, 3 * DALLE_PRICE)
    counters = await cluster.rows(
        "SELECT spent_micro_usd, reserved_micro_usd FROM budget_counters WHERE spent_micro_usd > 0"
    )
    assert (3 * DALLE_PRICE, 0) in [(int(s), int(r)) for s, r in counters]


async def _events(base_url: str, job_id: str, auth: dict[str, str]) -> list[tuple[str, Any]]:
    """A job's SSE stream from ``base_url``, read to its end."""
    found: list[tuple[str, Any]] = []
    name = ""
    async with (
        httpx.AsyncClient(timeout=90) as client,
        client.stream("GET", f"{base_url}/v1/jobs/{job_id}/events", headers=auth) as stream,
    ):
        assert stream.status_code == 200
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                found.append((name, json.loads(line.removeprefix("data: "))))
    return found


async def test_jobs_run_once_each_on_both_workers_and_stream_from_either_gateway(
    cluster_for_test: Cluster,
) -> None:
    cluster = cluster_for_test
    marker = _marker()
    cluster.upstream.faults.random(1.0, [Fault.latency(1.0)])  # a worker's 2 slots stay busy
    ids: list[str] = []
    streams: list[asyncio.Task[list[tuple[str, Any]]]] = []
    async with httpx.AsyncClient(timeout=90) as client:
        for i in range(8):
            submitted_on, watched_on = cluster.gateways[i % 2], cluster.gateways[1 - i % 2]
            response = await client.post(
                f"{submitted_on.base_url}/v1/jobs",
                json={**GPT, "prompt": f"job {i} {marker}"},
                headers=cluster.auth(),
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
            if i < 2:  # watch the first two on the gateway they were not submitted to
                streams.append(
                    asyncio.create_task(_events(watched_on.base_url, ids[-1], cluster.auth()))
                )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            [(done,)] = await cluster.rows(
                "SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND status IN "
                "('succeeded', 'failed', 'canceled')",
                ids=ids,
            )
            if done == len(ids):
                break
            await asyncio.sleep(0.2)
        watched = await asyncio.wait_for(asyncio.gather(*streams), timeout=60)
    cluster.upstream.faults.clear()

    rows = await cluster.rows(
        "SELECT status, attempts, generation_id FROM jobs WHERE id = ANY(:ids)", ids=ids
    )
    assert sorted((status, attempts) for status, attempts, _ in rows) == [("succeeded", 1)] * 8
    assert len({generation for _, _, generation in rows}) == 8
    calls = cluster.calls(marker)
    prompts = Counter(json.loads(c.body)["prompt"] for c in calls)
    assert prompts == {f"job {i} {marker}": 1 for i in range(8)}  # each job ran exactly once
    ports = Counter(int(c.headers["host"].rpartition(":")[2]) for c in calls)
    by_worker = {name: ports[port] for name, port in cluster.worker_ports.items()}
    assert all(count > 0 for count in by_worker.values()), by_worker  # both workers did some
    assert sum(by_worker.values()) == 8
    assert ports[cluster.gateway_port] == 0  # the gateways only queued them

    async with httpx.AsyncClient(timeout=90) as client:
        for events in watched:
            names = [name for name, _ in events]
            assert names[-1] == "succeeded", names
            assert "started" in names
            assert set(names) <= {"queued", "started", "progress", "succeeded"}
            url = events[-1][1]["result"]["data"][0]["url"]
            for gateway in cluster.gateways:  # the job's image, from both gateways
                fetched = await client.get(f"{gateway.base_url}/files/{_file_key(url)}")
                assert fetched.status_code == 200
                assert fetched.content == cluster.stored(_file_key(url))


async def _thumbnail_url(
    client: httpx.AsyncClient, base_url: str, image_id: str, auth: dict[str, str]
) -> str:
    """The record's thumbnail URL, once the gateway that made the image has stored it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = await client.get(f"{base_url}/v1/images/{image_id}", headers=auth)
        assert record.status_code == 200, record.text
        thumbnail = record.json()["thumbnail_url"]
        if thumbnail and (await client.head(thumbnail)).status_code == 200:
            return str(thumbnail)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no thumbnail for {image_id}")


async def test_every_image_url_works_from_both_gateways(cluster_for_test: Cluster) -> None:
    cluster = cluster_for_test
    marker = _marker()
    bodies = [{**GPT, "n": 2, "prompt": f"twin kites {i} {marker}"} for i in range(2)]
    responses = await _spread(cluster, bodies)  # one request on each gateway
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    keys = [_file_key(item["url"]) for r in responses for item in r.json()["data"]]
    assert len(keys) == 4  # the fake draws by size and index: both requests have the same two
    async with httpx.AsyncClient(timeout=90) as client:
        # one library: the images made on either gateway are listed by the other
        listings = [
            await client.get(
                f"{g.base_url}/v1/images", params={"q": marker, "limit": 10}, headers=cluster.auth()
            )
            for g in cluster.gateways
        ]
        assert [r.status_code for r in listings] == [200, 200]
        listed = [sorted(_file_key(item["url"]) for item in r.json()["data"]) for r in listings]
        assert listed[0] == listed[1] == sorted(keys)
        image_ids = [item["id"] for item in listings[0].json()["data"]]
        thumbnails = [
            _file_key(await _thumbnail_url(client, cluster.gateways[0].base_url, i, cluster.auth()))
            for i in image_ids
        ]
        for key in sorted(set(keys + thumbnails)):
            fetched = [await client.get(f"{g.base_url}/files/{key}") for g in cluster.gateways]
            assert [f.status_code for f in fetched] == [200, 200], key
            assert fetched[0].content == fetched[1].content == cluster.stored(key)
            assert fetched[0].headers["etag"] == fetched[1].headers["etag"]
        for key in keys:
            assert hashlib.sha256(cluster.stored(key)).hexdigest() == key.removesuffix(".png")
            assert Image.open(io.BytesIO(cluster.stored(key))).size == (1024, 1024)
    for key in thumbnails:
        assert Image.open(io.BytesIO(cluster.stored(key))).format == "WEBP"
    in_bucket = set(cluster.s3.object_names(cluster.bucket))
    assert {PREFIX + key for key in keys + thumbnails} <= in_bucket
    on_disk = [p for d in cluster.data_dirs if d.exists() for p in d.rglob("*") if p.is_file()]
    assert not [p for p in on_disk if p.suffix in {".png", ".webp", ".jpeg", ".db"}], on_disk
