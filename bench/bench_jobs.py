"""The durable job queue on PostgreSQL: claims per second with 1, 2 and 4 worker processes, and
queue wait at a fixed offered load.

Three measurements, each on a fresh PostgreSQL database on this machine:

- ``queue``: the queue alone. N jobs are inserted, then K processes each loop on
  ``SqlJobQueue.claim`` (16 at a time) and end every claimed job with one status update
  (``fail``, the same statement shape as a success without a generation). Claims/s is N over
  the time from the first claim to the last.
- ``spine``: N jobs run by K ``imagegate worker`` processes (concurrency 8 each) against the
  instant OpenAI fake (``python -m tests.fakes.openai``): every job is claimed, authenticated,
  cache-checked, de-duplicated, generated, verified, stored and recorded with its result.
  Jobs/s from the jobs' own ``started_at`` / ``finished_at``.
- ``wait``: jobs posted to ``imagegate serve --no-workers`` at a fixed rate for a while, run by
  two worker processes; queue wait (``started_at - created_at``) p50 and p99.

Every run checks for double claims: jobs with more than one attempt, and (spine) upstream calls
beyond one per job.

    python bench/bench_jobs.py [--jobs 2000] [--workers 1 2 4] [--rate 100 --seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import create_postgres_database, drop_postgres_database
from tests.support.processes import (
    WorkerProcess,
    free_port,
    openai_provider,
    start_gateways,
)

from bench.bench_overhead import start_fake
from imagegate.container import build_services
from imagegate.db.engine import AsyncTransactions, create_engine
from imagegate.models import GenerationRequest, JobError
from imagegate.queue.sql import SqlJobQueue
from imagegate.services.jobs import JobOptions
from imagegate.settings import DatabaseSettings, Settings

ADMIN_URL = os.environ.get(
    "IMAGEGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
BODY = {"model": "gpt-image-1", "size": "1024x1024", "quality": "low"}


async def _seed(database_url: str, fake_url: str, count: int, data_dir: Path) -> None:
    """``count`` queued jobs of distinct prompts, submitted through the real JobService (one
    at a time: batches add a place-taking step to every claim, measured in the tests)."""
    settings = Settings(
        data_dir=data_dir,
        database={"url": database_url},
        providers=openai_provider(fake_url),
    )  # type: ignore[arg-type]
    async with build_services(settings) as services:
        issued = await services.keys.create("bench")
        principal = await services.keys.authenticate(f"Bearer {issued.secret}")
        for i in range(count):
            request = GenerationRequest(prompt=f"job {i}", **BODY)
            await services.jobs.submit(principal, request, JobOptions())


async def _rows(database_url: str, query: str) -> list[tuple[object, ...]]:
    engine = create_engine(database_url, DatabaseSettings(url=database_url))
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(sa.text(query))]
    finally:
        await engine.dispose()


def _claim_loop(database_url: str, owner: str, start_at: float) -> None:
    """One queue-only worker process: claim 16, end them, until nothing is left."""

    async def run() -> None:
        engine = create_engine(database_url, DatabaseSettings(url=database_url))
        queue = SqlJobQueue(engine, AsyncTransactions(engine).run)
        error = JobError("bench", "ended by the queue benchmark")
        await asyncio.sleep(max(0.0, start_at - time.time()))  # all processes start together
        try:
            while True:
                now = datetime.now(UTC)
                jobs = await queue.claim(owner, "gpt-image-1", 16, now + timedelta(seconds=60), now)
                if not jobs:
                    break
                for job in jobs:
                    await queue.fail(job.id, owner, error, datetime.now(UTC))
        finally:
            await engine.dispose()

    asyncio.run(run())


async def _summary(database_url: str, count: int) -> dict[str, float]:
    [(first, last_start, last_end, doubled, done)] = await _rows(
        database_url,
        "SELECT min(started_at), max(started_at), max(finished_at), "
        "count(*) FILTER (WHERE attempts > 1), count(*) FILTER (WHERE finished_at IS NOT NULL) "
        "FROM jobs",
    )
    assert done == count, f"{done} of {count} jobs finished"
    span = (last_start - first).total_seconds()  # type: ignore[operator]
    total = (last_end - first).total_seconds()  # type: ignore[operator]
    return {"claims_per_s": count / span, "done_per_s": count / total, "doubled": float(doubled)}


async def _wait_done(database_url: str, count: int, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        [(done,)] = await _rows(
            database_url, "SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL"
        )
        if done >= count:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("jobs did not finish")


async def bench_queue(fake_url: str, count: int, workers: int) -> dict[str, float]:
    database_url = await create_postgres_database(ADMIN_URL)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await _seed(database_url, fake_url, count, Path(tmp))
        start_at = time.time() + 1.0
        context = multiprocessing.get_context("spawn")
        processes = [
            context.Process(target=_claim_loop, args=(database_url, f"q{i}", start_at))
            for i in range(workers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        return await _summary(database_url, count)
    finally:
        await drop_postgres_database(ADMIN_URL, database_url)


def _worker_env(database_url: str, folder: Path) -> dict[str, str]:
    return {
        "IMAGEGATE_DATABASE__URL": database_url,
        "IMAGEGATE_CONFIG_FILE": str(folder / "imagegate.yaml"),
        "IMAGEGATE_JOBS__EMBEDDED_WORKERS": "false",
        "IMAGEGATE_JOBS__POLL_SECONDS": "0.05",
        "IMAGEGATE_LIMITS__REQUESTS_PER_MINUTE": "0",
        "IMAGEGATE_LIMITS__IMAGES_PER_MINUTE": "0",
        "IMAGEGATE_LIMITS__CONCURRENT_GENERATIONS": "0",
    }


async def bench_spine(fake_url: str, count: int, workers: int) -> dict[str, float]:
    database_url = await create_postgres_database(ADMIN_URL)
    async with httpx.AsyncClient() as client:
        calls_before = (await client.get(f"{fake_url}/fake/calls")).json()["count"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "imagegate.yaml").write_text(
                json.dumps({"providers": openai_provider(fake_url)})
            )
            await _seed(database_url, fake_url, count, folder / "data")
            env = _worker_env(database_url, folder)
            running = [
                WorkerProcess(folder / "data", env, f"w{i}", 8).start() for i in range(workers)
            ]
            try:
                await _wait_done(database_url, count)
            finally:
                for worker in running:
                    worker.terminate()
        summary = await _summary(database_url, count)
        async with httpx.AsyncClient() as client:
            calls = (await client.get(f"{fake_url}/fake/calls")).json()["count"] - calls_before
        summary["extra_upstream_calls"] = float(calls - count)
        return summary
    finally:
        await drop_postgres_database(ADMIN_URL, database_url)


async def bench_wait(fake_url: str, rate: int, seconds: int) -> dict[str, float]:
    database_url = await create_postgres_database(ADMIN_URL)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            env = _worker_env(database_url, folder)
            env.pop("IMAGEGATE_CONFIG_FILE")
            (gateway,), key = start_gateways(
                folder, {"providers": openai_provider(fake_url)}, **env
            )
            env["IMAGEGATE_CONFIG_FILE"] = str(folder / "imagegate.yaml")
            running = [WorkerProcess(folder / "data", env, f"w{i}", 8).start() for i in range(2)]
            try:
                total = rate * seconds
                async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
                    started = time.monotonic()
                    sent = []
                    for i in range(total):
                        target = started + i / rate
                        await asyncio.sleep(max(0.0, target - time.monotonic()))
                        sent.append(
                            asyncio.create_task(
                                client.post(
                                    "/v1/jobs",
                                    json={**BODY, "prompt": f"paced {i}"},
                                    headers={"Authorization": f"Bearer {key}"},
                                )
                            )
                        )
                    responses = await asyncio.gather(*sent)
                assert all(r.status_code == 202 for r in responses)
                await _wait_done(database_url, total)
            finally:
                for worker in running:
                    worker.terminate()
                gateway.stop()
        waits = [
            float(row[0])  # type: ignore[arg-type]
            for row in await _rows(
                database_url,
                "SELECT extract(epoch FROM started_at - created_at) * 1000 FROM jobs",
            )
        ]
        waits.sort()
        return {
            "rate": float(rate),
            "p50_ms": statistics.median(waits),
            "p99_ms": waits[int(len(waits) * 0.99) - 1],
        }
    finally:
        await drop_postgres_database(ADMIN_URL, database_url)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rate", type=int, default=100, help="jobs/s offered in the wait run")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    port = free_port()
    fake = start_fake(port)
    fake_url = f"http://127.0.0.1:{port}"
    try:
        print("| run | workers | jobs | claims/s | done/s | jobs run twice | extra calls |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for workers in args.workers:
            result = await bench_queue(fake_url, args.jobs, workers)
            row = (result["claims_per_s"], result["done_per_s"], result["doubled"])
            print(f"| queue only | {workers} | {args.jobs} | " + " | ".join(f"{v:.0f}" for v in row)
                  + " | - |", flush=True)  # fmt: skip
        for workers in args.workers:
            result = await bench_spine(fake_url, args.jobs, workers)
            print(f"| whole spine | {workers} | {args.jobs} | {result['claims_per_s']:.0f} | "
                  f"{result['done_per_s']:.0f} | {result['doubled']:.0f} | "
                  f"{result['extra_upstream_calls']:.0f} |", flush=True)  # fmt: skip
        waited = await bench_wait(fake_url, args.rate, args.seconds)
        print(f"\nqueue wait at {waited['rate']:.0f} jobs/s offered for {args.seconds} s, 2 "
              f"workers: p50 {waited['p50_ms']:.1f} ms, p99 {waited['p99_ms']:.1f} ms")  # fmt: skip
    finally:
        fake.kill()
        fake.wait()


if __name__ == "__main__":
    asyncio.run(main())
