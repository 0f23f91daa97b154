"""Pay once, measured: cache-hit speed, and upstream calls saved on a realistic replay.

1. Cache hits: wrk sends the same request to one ``imagegate serve`` process (in front of the
   OpenAI fake) at each concurrency; after the first, every request is a hit.
2. Replay: 10,000 requests drawn Zipf-like (s = 1.1) over 2,000 prompts, a quarter of them
   with whitespace variants, sent in bursts of 1-8 concurrent copies at concurrency 32.
   Upstream calls (counted by the fake) are compared with the naive count (one per request)
   and the floor (unique normalized requests).

    python bench/bench_cache.py [--duration 10] [--requests 10000] [--prompts 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.processes import free_port, openai_provider, start_gateways

from bench.bench_overhead import start_fake
from bench.wrk import post_script, run_wrk

BASE = {"model": "dall-e-2", "size": "256x256", "response_format": "url"}
PRICE_USD = 0.016  # dall-e-2 256x256


def _zipf_prompts(count: int, prompts: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    weights = [1 / (rank**1.1) for rank in range(1, prompts + 1)]
    picks = rng.choices(range(prompts), weights=weights, k=count)
    out = []
    for pick in picks:
        prompt = f"a watercolor of landmark number {pick} at dawn"
        if rng.random() < 0.25:  # the same request, typed differently
            prompt = "  " + prompt.replace(" ", "   ", 2) + " \n"
        out.append(prompt)
    return out


async def _replay(base_url: str, key: str, prompts: list[str]) -> float:
    rng = random.Random(11)
    gate = asyncio.Semaphore(32)
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60
    ) as c:

        async def one(prompt: str) -> None:
            async with gate:
                for attempt in range(3):  # a keep-alive connection the server just closed
                    try:
                        response = await c.post(
                            "/v1/images/generations", json={**BASE, "prompt": prompt}
                        )
                        break
                    except httpx.TransportError:
                        if attempt == 2:
                            raise
                response.raise_for_status()

        started = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()
        for prompt in prompts:
            burst = rng.randint(1, 8)  # concurrent duplicates of one request
            pending |= {asyncio.create_task(one(prompt)) for _ in range(burst)}
            if len(pending) >= 256:  # keep a bounded backlog queued behind the 32 in flight
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        for task in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(task, BaseException):
                raise task
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--prompts", type=int, default=2_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    fake_port = free_port()
    fake = start_fake(fake_port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fake_url = f"http://127.0.0.1:{fake_port}"
            (server,), key = start_gateways(Path(tmp), {"providers": openai_provider(fake_url)})
            try:
                url = f"{server.base_url}/v1/images/generations"
                script = post_script(Path(tmp), key, json.dumps({**BASE, "prompt": "hit me"}))
                run_wrk(url, script, 4, 2)  # warm-up; the first request fills the cache
                print("Cache hits, dall-e-2 256x256, url responses")
                print("| concurrency | req/s | p50 ms | p99 ms | non-2xx |")
                print("|---:|---:|---:|---:|---:|")
                for concurrency in (1, 16, 64):
                    r = run_wrk(url, script, concurrency, args.duration)
                    print(f"| {concurrency} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
                          f"{r['p99_ms']:.2f} | {r['errors']:.0f} |", flush=True)  # fmt: skip
                prompts = _zipf_prompts(args.requests, args.prompts)
                calls_before = _fake_calls(fake_port)
                seconds = asyncio.run(_replay(server.base_url, key, prompts))
                sent = _sent_requests(prompts)
                calls = _fake_calls(fake_port) - calls_before
                floor = len({" ".join(p.split()) for p in prompts})
                print(f"\nReplay: {sent} requests ({len(prompts)} draws, bursts of 1-8 copies) "
                      f"over {args.prompts} prompts in {seconds:.1f} s")  # fmt: skip
                print("| | upstream calls | spend USD |")
                print("|---|---:|---:|")
                for label, count in (("naive", sent), ("floor", floor), ("imagegate", calls)):
                    print(f"| {label} | {count} | {count * PRICE_USD:.2f} |")
            finally:
                server.stop()
    finally:
        fake.terminate()
        fake.wait()


def _sent_requests(prompts: list[str]) -> int:
    rng = random.Random(11)
    return sum(rng.randint(1, 8) for _ in prompts)


def _fake_calls(port: int) -> int:
    return int(httpx.get(f"http://127.0.0.1:{port}/fake/calls").json()["count"])


if __name__ == "__main__":
    main()
