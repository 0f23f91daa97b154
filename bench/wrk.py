"""wrk, driven from Python: a POST script and the figures read back from its report."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

_LUA = """
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


_UNIQUE = """
local counter = 0
local thread_tag = tostring(math.random(1, 1000000000))
request = function()
  counter = counter + 1
  local body = string.gsub('{body}', "@N@", thread_tag .. "-" .. counter)
  return wrk.format(nil, nil, nil, body)
end
"""


_GET = """
wrk.method = "GET"
{headers}
local paths = {{{paths}}}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format(nil, paths[i])
end
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def get_script(folder: Path, name: str, headers: dict[str, str], paths: list[str]) -> Path:
    """A wrk Lua script that GETs ``paths`` in turn (one path: always that one) with
    ``headers``; the URL given to wrk then only names the server."""
    lines = "\n".join(
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()
    )
    script = folder / f"get-{name}.lua"
    script.write_text(_GET.format(headers=lines, paths=", ".join(map(_lua_string, paths))))
    return script


def post_script(folder: Path, key: str, body: str, unique_marker: str | None = None) -> Path:
    """A wrk Lua script that POSTs ``body`` as JSON with ``Authorization: Bearer key``.

    With ``unique_marker``, that text in the body is replaced by a fresh value per request (per
    wrk thread and counter), so no two requests are identical: every one is a cache miss.
    """
    script = folder / f"post-{abs(hash((key, body, unique_marker)))}.lua"
    text = _LUA.format(key=key, body=body)
    if unique_marker is not None:
        text += _UNIQUE.replace("{body}", body.replace(unique_marker, "@N@"))
    script.write_text(text)
    return script
