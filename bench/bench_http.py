"""Requests/s and latency of POST /v1/images/generations through a real gateway process.

Starts ``imagegate serve`` on a temporary data dir (SQLite, local disk, builtin renderer), then
drives it with wrk (Debian package ``wrk``) at each concurrency. Load generator and gateway share
this machine's cores, as the published figures say.

    python bench/bench_http.py [--duration 10] [--concurrency 1 16 64] [--size 256x256] [--rss]

With ``--rss``, also the gateway process's peak resident memory (Linux ``VmHWM``) after the
runs: the target is <= 120 MiB at concurrency 64.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.processes import ServerProcess, run_cli

from bench.bench_overhead import UNLIMITED
from bench.wrk import post_script, run_wrk


def peak_rss_mib(pid: int) -> float:
    """The process's high-water mark of resident memory, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc: --rss needs Linux")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--response-format", default="url", choices=["url", "b64_json"])
    parser.add_argument("--rss", action="store_true", help="report the gateway's peak RSS")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        unlimited = ("--requests-per-minute", "0", "--concurrency", "0")
        created = run_cli("keys", "create", "--name", "bench", *unlimited, data_dir=data_dir)
        key = created.stdout.strip()
        body = json.dumps(
            {"model": "builtin", "prompt": "a red fox in the snow", "size": args.size,
             "response_format": args.response_format}
        )  # fmt: skip
        script = post_script(Path(tmp), key, body)
        server = ServerProcess(data_dir, env=UNLIMITED).start()
        try:
            url = f"{server.base_url}/v1/images/generations"
            run_wrk(url, script, 4, 2)  # warm-up
            print(f"POST /v1/images/generations, builtin {args.size}, {args.response_format}")
            print("| concurrency | req/s | p50 ms | p99 ms | non-2xx |")
            print("|---:|---:|---:|---:|---:|")
            for concurrency in args.concurrency:
                r = run_wrk(url, script, concurrency, args.duration)
                print(
                    f"| {concurrency} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                    f"| {r['errors']:.0f} |"
                )
            if args.rss:
                peak = peak_rss_mib(server.pid)
                print(f"peak RSS of the gateway process: {peak:.1f} MiB (target <= 120 MiB)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
