"""PostgreSQL taken away under load and brought back (through a TCP proxy: the machine's server
is never stopped): a gateway with its embedded worker, and a separate worker process.

While the database is away every request fails fast with 503 ``database_unavailable`` and
``Retry-After`` (never a 500, never a hang) and /readyz says the database is down; once it is
back the same processes serve again, and every job accepted with a 2xx, including those
running when the database went away, ends exactly once, succeeded."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url
from tests.support.db import fetch_rows
from tests.support.processes import WorkerProcess, start_gateways
from tests.support.tcp_proxy import ThreadedTcpProxy

BOUND_SECONDS = 10.0
"""A correctness bound (fails fast rather than hangs), not a speed target."""
OUTAGE_SECONDS = 6.0
LEASE_SECONDS = 15  # longer than the outage: the workers that hold the jobs finish them
REQUEST = {"model": "builtin", "size": "256x256"}
BURST = 60  # jobs submitted just before the cut, so that some are running at the cut


@dataclass
class Answer:
    kind: str
    started: float
    elapsed: float
    status: int | None
    """None: no HTTP answer within the client's timeout (a hang)."""
    code: str | None = None
    retry_after: str | None = None


@dataclass
class Load:
    """Sync generations and job submissions, one after another on each of a few clients,
    until stopped; every answer is kept."""

    base_url: str
    key: str
    answers: list[Answer] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    """Ids of the jobs accepted with a 2xx."""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _count: int = 0

    async def run(self, clients: int) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30) as http:
            await asyncio.gather(*(self._loop(http, i % 2 == 0) for i in range(clients)))

    def stop(self) -> None:
        self._stop.set()

    async def _loop(self, http: httpx.AsyncClient, sync: bool) -> None:
        while not self._stop.is_set():
            self._count += 1
            prompt = f"{'sync' if sync else 'job'} {self._count}"
            path = "/v1/images/generations" if sync else "/v1/jobs"
            await self.send(http, "sync" if sync else "job", path, {**REQUEST, "prompt": prompt})
            await asyncio.sleep(0.05)

    async def send(
        self, http: httpx.AsyncClient, kind: str, path: str, body: dict[str, object]
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await http.post(path, json=body)
        except httpx.TimeoutException:
            self.answers.append(Answer(kind, started, time.monotonic() - started, None))
            return None
        answer = Answer(kind, started, time.monotonic() - started, response.status_code)
        if response.status_code >= 400:
            answer.code = response.json()["error"]["code"]
            answer.retry_after = response.headers.get("retry-after")
        elif kind == "job":
            self.accepted.append(response.json()["id"])
        elif kind == "batch":
            self.accepted.extend(job["id"] for job in response.json()["jobs"])
        self.answers.append(answer)
        return response


async def _until(check: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {seconds}s: {what}")


async def test_requests_fail_fast_while_postgres_is_away_and_the_same_processes_recover(
    tmp_path: Path, postgres_database: str
) -> None:
    target = make_url(postgres_database)
    with ThreadedTcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        through = target.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        env = {
            "IMAGEGATE_DATABASE__URL": through,
            "IMAGEGATE_DATABASE__CONNECT_TIMEOUT_SECONDS": "2",
            "IMAGEGATE_JOBS__LEASE_SECONDS": str(LEASE_SECONDS),
            "IMAGEGATE_JOBS__POLL_SECONDS": "0.1",
            "IMAGEGATE_JOBS__CONCURRENCY": "4",
            "IMAGEGATE_AUTH_CACHE_SECONDS": "0",  # every request asks the database who it is
            "IMAGEGATE_LIMITS__REQUESTS_PER_MINUTE": "0",
            "IMAGEGATE_LIMITS__IMAGES_PER_MINUTE": "0",
            "IMAGEGATE_LIMITS__CONCURRENT_GENERATIONS": "0",
        }
        (gateway,), key = await asyncio.to_thread(start_gateways, tmp_path, {}, **env)
        pid = gateway.pid
        worker_env = {**env, "IMAGEGATE_CONFIG_FILE": str(tmp_path / "imagegate.yaml")}
        worker = WorkerProcess(tmp_path / "data", worker_env, "worker-0", concurrency=4).start()
        load = Load(gateway.base_url, key)
        running = asyncio.create_task(load.run(clients=4))
        try:
            await asyncio.sleep(3)
            async with httpx.AsyncClient(
                base_url=gateway.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as http:
                prompts = [f"burst {i}" for i in range(BURST)]
                burst = {"request": REQUEST, "prompts": prompts, "concurrency": BURST}
                sent = await load.send(http, "batch", "/v1/batches", burst)
                assert sent is not None
                assert sent.status_code == 202, sent.text

                async def some_running() -> bool:
                    query = "SELECT count(*) FROM jobs WHERE status = 'running'"
                    [(n,)] = await fetch_rows(postgres_database, query)
                    return int(n) > 0  # type: ignore[call-overload]

                await _until(some_running, 10, "a job running")
                cut_at = time.monotonic()
                proxy.cut()
                # claimed before the outage, not ended: nothing can be written while it lasts
                caught = {
                    str(job_id)
                    for (job_id,) in await fetch_rows(
                        postgres_database, "SELECT id FROM jobs WHERE status = 'running'"
                    )
                }
                await asyncio.sleep(OUTAGE_SECONDS / 2)
                ready_started = time.monotonic()
                ready = await http.get("/readyz")
                ready_seconds = time.monotonic() - ready_started
                await asyncio.sleep(OUTAGE_SECONDS / 2)
                restored_at = time.monotonic()
                proxy.restore()

                async def served_again() -> bool:
                    body = {**REQUEST, "prompt": f"after {time.monotonic()}"}
                    answer = await load.send(http, "sync", "/v1/images/generations", body)
                    return answer is not None and answer.status_code == 200

                await _until(served_again, 30, "a generation after the database came back")
                # more load on the recovered processes
                await asyncio.sleep(max(2.0, restored_at + 8 - time.monotonic()))
                load.stop()
                await running
                back = await http.get("/readyz")

            async def all_ended() -> bool:
                query = "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"
                return (await fetch_rows(postgres_database, query)) == [(0,)]

            await _until(all_ended, 120, "every job ended")
            assert gateway.alive()
            assert gateway.pid == pid  # the same process, never restarted
            assert worker.alive()
        finally:
            load.stop()
            with contextlib.suppress(Exception):
                await running
            worker.stop()
            await asyncio.to_thread(gateway.stop)

    # the premise: jobs were running when the database went away
    assert caught

    def during(a: Answer) -> bool:
        return a.started > cut_at + 0.5 and a.started + a.elapsed < restored_at

    outage = [a for a in load.answers if during(a)]
    assert len(outage) >= 10
    for answer in outage:
        assert (answer.status, answer.code) == (503, "database_unavailable"), answer
        assert answer.retry_after is not None
        assert int(answer.retry_after) >= 1
    # no answer at any time was a hang, a 500 or anything but success or that 503
    slow = [a for a in load.answers if a.status is None or a.elapsed >= BOUND_SECONDS]
    assert not slow, [(a, round(a.started - cut_at, 2)) for a in slow]
    assert {(a.status, a.code) for a in load.answers} <= {
        (200, None),
        (202, None),
        (503, "database_unavailable"),
    }
    assert ready.status_code == 503
    assert ready_seconds < BOUND_SECONDS
    assert ready.json()["checks"]["database"] != "ok"
    assert back.status_code == 200
    assert back.json()["checks"]["database"] == "ok"
    after = [a for a in load.answers if a.started > restored_at + 5]
    assert after
    assert all(a.status in (200, 202) for a in after)

    # every accepted job ended once, succeeded, with a generation of its own
    accepted = set(load.accepted)
    assert caught <= accepted
    rows = await fetch_rows(postgres_database, "SELECT id, status, generation_id FROM jobs")
    by_id = {str(job_id): (status, generation) for job_id, status, generation in rows}
    assert Counter(by_id[job_id][0] for job_id in accepted) == {"succeeded": len(accepted)}
    generations = [by_id[job_id][1] for job_id in accepted]
    assert None not in generations
    assert len(set(generations)) == len(accepted)
    made = await fetch_rows(
        postgres_database,
        "SELECT g.id FROM generations g JOIN jobs j ON j.generation_id = g.id "
        "WHERE g.outcome = 'generated'",
    )
    assert {str(g) for (g,) in made} >= {str(g) for g in generations}
