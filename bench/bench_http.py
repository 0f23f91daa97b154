"""Requests/s and latency of POST /v1/images/generations through a real gateway process.

Starts ``imagegate serve`` on a temporary data dir (SQLite, local disk, builtin renderer), then
drives it with wrk (Debian package ``wrk``) at each concurrency. Load generator and gateway share
this machine's cores, as the published figures say.

    python bench/bench_http.py [--duration 10] [--concurrency 1 16 64] [--size 256x256]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.processes import ServerProcess, run_cli

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.body = '{body}'
"""

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run_wrk(url: str, script: Path, concurrency: int, duration: int) -> dict[str, float]:
    threads = min(concurrency, 2)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--timeout", "30s",
         "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)\s*$", out, re.MULTILINE))
    if set(percentiles) != {"50", "99"}:
        raise RuntimeError(f"could not read wrk's latency distribution:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(percentiles["50"]),
        "p99_ms": _ms(percentiles["99"]),
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--response-format", default="url", choices=["url", "b64_json"])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        key = run_cli("keys", "create", "--name", "bench", data_dir=data_dir).stdout.strip()
        body = json.dumps(
            {"model": "builtin", "prompt": "a red fox in the snow", "size": args.size,
             "response_format": args.response_format}
        )  # fmt: skip
        script = Path(tmp) / "post.lua"
        script.write_text(LUA.format(key=key, body=body))
        server = ServerProcess(data_dir).start()
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
        finally:
            server.stop()


if __name__ == "__main__":
    main()
