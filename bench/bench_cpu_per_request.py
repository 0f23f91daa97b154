"""Gateway CPU per cache-miss request: a figure that machine load barely moves.

The OpenAI fake answers at once (``python -m tests.fakes.openai``); one ``imagegate serve``
process (SQLite, local disk) in front of it gets ``--requests`` sequential requests, each with a
new prompt (so each misses the cache, calls the fake, checks, stores and records the image).
The gateway's user + system CPU time over them, divided by their number, is the cost of one
request on this machine: throughput on N free cores is at best N / that.

    python bench/bench_cpu_per_request.py [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_overhead import BODY, gateway_in_front_of_fake


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        gateway_in_front_of_fake(Path(tmp)) as (server, key, _),
        httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as client,
    ):

        def send(prompt: str) -> None:
            body = {**BODY, "prompt": prompt, "response_format": "url"}
            client.post("/v1/images/generations", json=body).raise_for_status()

        for i in range(50):
            send(f"warm-up {i}")
        time.sleep(1)  # background thumbnails of the warm-up are done
        before = cpu_seconds(server.pid)
        started = time.perf_counter()
        for i in range(args.requests):
            send(f"a red fox {i}")
        wall = time.perf_counter() - started
        time.sleep(1)  # and those of the measured requests are counted too
        used = cpu_seconds(server.pid) - before
    print(
        f"gateway CPU per request: {used / args.requests * 1000:.2f} ms; "
        f"wall per request: {wall / args.requests * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
