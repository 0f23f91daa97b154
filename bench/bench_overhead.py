"""Gateway overhead: imagegate in front of an instant OpenAI fake vs calling the fake directly.

Three processes share this 2-core machine: the OpenAI fake (``python -m tests.fakes.openai``,
answers at once with a precomputed image), one ``imagegate serve`` process (SQLite, local disk,
every request verified, stored and recorded), and wrk. Each row is a 10 s run after a warm-up.

    python bench/bench_overhead.py [--duration 10] [--concurrency 1 16 64] [--rss]

With ``--rss``, also the gateway process's resident memory at rest and its peak (Linux
``VmHWM``) after each concurrency's run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.processes import ServerProcess, free_port, openai_provider, start_gateways

from bench.wrk import post_script, run_wrk

# The per-key limits would answer most of the load with 429s: measure the gateway, not them.
UNLIMITED = {
    "IMAGEGATE_LIMITS__REQUESTS_PER_MINUTE": "0",
    "IMAGEGATE_LIMITS__IMAGES_PER_MINUTE": "0",
    "IMAGEGATE_LIMITS__CONCURRENT_GENERATIONS": "0",
}
BODY = {"model": "gpt-image-1", "prompt": "a red fox", "size": "1024x1024", "quality": "low"}


def start_fake(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the OpenAI fake did not start")


@contextlib.contextmanager
def gateway_in_front_of_fake(folder: Path) -> Iterator[tuple[ServerProcess, str, int]]:
    """The OpenAI fake and one gateway (limits off) pointing at it: (gateway, key, fake port)."""
    fake_port = free_port()
    fake = start_fake(fake_port)
    try:
        config = {"providers": openai_provider(f"http://127.0.0.1:{fake_port}")}
        (server,), key = start_gateways(folder, config, **UNLIMITED)
        try:
            yield server, key, fake_port
        finally:
            server.stop()
    finally:
        fake.terminate()
        fake.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rss", action="store_true", help="report the gateway's peak RSS")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    from bench.bench_http import peak_rss_mib  # bench_http imports this module

    with (
        tempfile.TemporaryDirectory() as tmp,
        gateway_in_front_of_fake(Path(tmp)) as (server, key, fake_port),
    ):
        # A new prompt per request: every one misses the cache and calls the provider.
        body = json.dumps({**BODY, "prompt": "a red fox UNIQUE", "response_format": "url"})
        gateway_script = post_script(Path(tmp), key, body, unique_marker="UNIQUE")
        direct_script = post_script(Path(tmp), "test-key", json.dumps(BODY))
        gateway_url = f"{server.base_url}/v1/images/generations"
        direct_url = f"http://127.0.0.1:{fake_port}/v1/images/generations"
        run_wrk(gateway_url, gateway_script, 4, 2)  # warm-up
        run_wrk(direct_url, direct_script, 4, 2)
        peaks = [f"after the warm-up: {peak_rss_mib(server.pid):.1f} MiB"]
        print("| path | concurrency | req/s | p50 ms | p99 ms | non-2xx |")
        print("|---|---:|---:|---:|---:|---:|")
        for concurrency in args.concurrency:
            for label, url, script in (
                ("direct to fake", direct_url, direct_script),
                ("through imagegate", gateway_url, gateway_script),
            ):
                r = run_wrk(url, script, concurrency, args.duration)
                print(
                    f"| {label} | {concurrency} | {r['rps']:.0f} | {r['p50_ms']:.2f} "
                    f"| {r['p99_ms']:.2f} | {r['errors']:.0f} |",
                    flush=True,
                )
            peaks.append(f"after c{concurrency}: {peak_rss_mib(server.pid):.1f} MiB")
        if args.rss:
            print("peak RSS of the gateway (VmHWM) " + ", ".join(peaks))


if __name__ == "__main__":
    main()
